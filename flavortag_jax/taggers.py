"""Trained taggers as found in their workdirs, loaded behind one interface.

A trained tagger's workdir holds `tagger.json` ({"kind": "dnn" | "category",
"name": ..., "schema_version": 1, ...}) and whatever its kind needs to
predict; optionally `history.json` (per-epoch training figures) and
`outputs.npz` (qr and true q on the tagger's own train and test splits).
`load` reads the description and hands the workdir to the loader of its
kind, imported only when needed.
"""

from collections.abc import Callable
import dataclasses
import importlib
import json
import os
import pathlib
from typing import Any
import zipfile

import numpy as np

from flavortag_jax import shards

TAGGER_FILE = 'tagger.json'
HISTORY_FILE = 'history.json'
OUTPUTS_FILE = 'outputs.npz'
SCHEMA_VERSION = 1

# Tagger kind -> module whose load_predictor(workdir) restores it.
PREDICTOR_MODULES = {
  'dnn': 'flavortag_jax.train',
  'category': 'flavortag_jax.category_tagger',
}

OUTPUT_KEYS = ('train_qr', 'train_q', 'test_qr', 'test_q')


class TaggerError(ValueError):
  """A tagger workdir is missing, incomplete or of an unknown kind."""


@dataclasses.dataclass(frozen=True)
class Tagger:
  """A trained tagger ready to tag events.

  Attributes:
    name: Name from tagger.json, used in reports.
    kind: 'dnn' or 'category'.
    predict: Events -> qr in [-1, 1], shape [events].
    workdir: The folder it was loaded from.
    description: The whole content of tagger.json.
  """

  name: str
  kind: str
  predict: Callable[[shards.Events], np.ndarray]
  workdir: pathlib.Path
  description: dict[str, Any]


def read_description(workdir: str | os.PathLike) -> dict[str, Any]:
  """Reads and checks `workdir/tagger.json`.

  Raises:
    TaggerError: The workdir or its tagger.json is missing or unreadable,
      or the description lacks a known kind, a name or the schema version.
  """
  workdir = pathlib.Path(workdir)
  if not workdir.is_dir():
    raise TaggerError(
      f'{workdir}: no such tagger workdir; pass the folder a training run '
      'wrote (python -m experiments.train or experiments.train_categories)'
    )
  path = workdir / TAGGER_FILE
  if not path.is_file():
    raise TaggerError(
      f'{path}: missing; a trained tagger workdir holds {TAGGER_FILE}, '
      'written at the end of training. Was the training run finished?'
    )
  try:
    description = json.loads(path.read_text())
  except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
    raise TaggerError(f'{path}: not readable JSON ({e})') from e
  if not isinstance(description, dict):
    raise TaggerError(
      f'{path}: expected a JSON object, found {type(description).__name__}'
    )

  kind = description.get('kind')
  if kind not in PREDICTOR_MODULES:
    raise TaggerError(
      f'{path}: unknown tagger kind {kind!r}; expected one of '
      f'{sorted(PREDICTOR_MODULES)}'
    )
  name = description.get('name')
  if not isinstance(name, str) or not name:
    raise TaggerError(
      f'{path}: "name" must be a non-empty string, found {name!r}'
    )
  version = description.get('schema_version')
  if version != SCHEMA_VERSION:
    raise TaggerError(
      f'{path}: schema_version {version!r}, this code reads version '
      f'{SCHEMA_VERSION}; retrain the tagger or use a matching release'
    )
  return description


def load(workdir: str | os.PathLike) -> Tagger:
  """Loads the trained tagger in `workdir`.

  Args:
    workdir: A folder written by a training run.

  Returns:
    The tagger; its predict checks that it gets one finite qr in [-1, 1]
    per event.

  Raises:
    TaggerError: See read_description; also when the module of the kind
      cannot be imported.
  """
  workdir = pathlib.Path(workdir)
  description = read_description(workdir)
  kind = description['kind']
  module_name = PREDICTOR_MODULES[kind]
  try:
    module = importlib.import_module(module_name)
  except ImportError as e:
    raise TaggerError(
      f'{workdir}: a {kind!r} tagger is restored by {module_name}, which '
      f'cannot be imported: {e}'
    ) from e
  predictor = module.load_predictor(workdir)
  name = description['name']

  def predict(events: shards.Events) -> np.ndarray:
    qr = np.asarray(predictor(events), np.float64)
    if qr.shape != (events.num_events,):
      raise TaggerError(
        f'tagger {name!r} returned shape {qr.shape} for '
        f'{events.num_events} events, expected one qr per event'
      )
    if not np.all(np.isfinite(qr)) or np.any(np.abs(qr) > 1):
      raise TaggerError(
        f'tagger {name!r} returned values outside [-1, 1] or NaN: from '
        f'{np.nanmin(qr)} to {np.nanmax(qr)}, {np.isnan(qr).sum()} NaN'
      )
    return qr

  return Tagger(name, kind, predict, workdir, description)


def training_data_dir(tagger: Tagger) -> pathlib.Path | None:
  """Returns the data folder the tagger was trained on, where recorded.

  Looks for "data_dir" in tagger.json, then in the run's config.json.
  """
  data_dir = tagger.description.get('data_dir')
  config_path = tagger.workdir / 'config.json'
  if data_dir is None and config_path.is_file():
    try:
      data_dir = json.loads(config_path.read_text()).get('data_dir')
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError):
      data_dir = None
  return pathlib.Path(data_dir) if isinstance(data_dir, str) else None


def trained_on(tagger: Tagger, data_dir: str | os.PathLike) -> bool:
  """Tells whether `data_dir` is the folder the tagger was trained on.

  NOTE: This compares folder paths only, so it cannot tell a copy of the
  training events or a folder recorded with a path relative to another
  working directory; it catches the common slip of evaluating a tagger on
  its own training folder.
  """
  trained = training_data_dir(tagger)
  return trained is not None and (
    trained.resolve() == pathlib.Path(data_dir).resolve()
  )


def read_history(workdir: str | os.PathLike) -> list[dict[str, Any]] | None:
  """Returns the per-epoch training history, or None if there is none.

  Raises:
    TaggerError: history.json exists but is not a list of objects.
  """
  path = pathlib.Path(workdir) / HISTORY_FILE
  if not path.is_file():
    return None
  try:
    history = json.loads(path.read_text())
  except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
    raise TaggerError(f'{path}: not readable JSON ({e})') from e
  if not isinstance(history, list) or not all(
    isinstance(e, dict) for e in history
  ):
    raise TaggerError(f'{path}: expected a list of per-epoch objects')
  return history


def read_outputs(workdir: str | os.PathLike) -> dict[str, np.ndarray] | None:
  """Returns the tagger's outputs on its own train and test splits.

  Returns:
    Dict train_qr, train_q, test_qr, test_q (each shape [events of that
    split]), or None if the workdir has no outputs.npz.

  Raises:
    TaggerError: outputs.npz exists but is unreadable or lacks a key.
  """
  path = pathlib.Path(workdir) / OUTPUTS_FILE
  if not path.is_file():
    return None
  try:
    with np.load(path) as data:
      outputs = {k: data[k] for k in data.files}
  except (OSError, ValueError, zipfile.BadZipFile) as e:
    raise TaggerError(f'{path}: not a readable .npz file ({e})') from e
  missing = sorted(set(OUTPUT_KEYS) - set(outputs))
  if missing:
    raise TaggerError(
      f'{path}: missing arrays {missing}; expected {list(OUTPUT_KEYS)}'
    )
  return {k: outputs[k] for k in OUTPUT_KEYS}
