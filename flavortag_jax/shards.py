"""HDF5 event shards: the schema, an atomic writer and a checking reader.

A shard holds a chunk of events. Event-level columns live in the group
`events`, track-level columns in the group `tracks`, as flat arrays; event i
owns tracks `track_offsets[i]:track_offsets[i + 1]`. File attributes record
the schema version, the generation mode, the seed and every generator and
detector setting (as JSON).
"""

from collections.abc import Iterable, Mapping
import dataclasses
import json
import os
import pathlib
from typing import Any

import h5py
import numpy as np

from flavortag_jax import atomic

SCHEMA_VERSION = 1
FORMAT_NAME = 'flavortag_jax.events'

# Event-level columns: name -> (dtype, trailing shape, description).
EVENT_COLUMNS: dict[str, tuple[str, tuple[int, ...], str]] = {
  'q_tag': ('int8', (), 'tag B flavor at its decay: +1 B0, -1 anti-B0'),
  'q_sig': ('int8', (), 'signal B flavor at its decay, 0 where undefined'),
  't_tag': ('float32', (), 'tag B proper decay time, ps'),
  't_sig': ('float32', (), 'signal B proper decay time, ps'),
  'dt': ('float32', (), 'true t_sig - t_tag, ps'),
  'tag_vertex': ('float32', (3,), 'tag B decay vertex in the lab, cm'),
  'sig_vertex': ('float32', (3,), 'signal B decay vertex in the lab, cm'),
  'n_tracks': ('int32', (), 'number of reconstructed tracks'),
  'tag_flags': ('uint32', (), 'bit mask of tag-side decay categories'),
}

# Track-level columns. Reconstructed quantities first, then truth (mc_*).
TRACK_COLUMNS: dict[str, tuple[str, tuple[int, ...], str]] = {
  'px': ('float32', (), 'reconstructed lab momentum x, GeV'),
  'py': ('float32', (), 'reconstructed lab momentum y, GeV'),
  'pz': ('float32', (), 'reconstructed lab momentum z, GeV'),
  'charge': ('int8', (), 'reconstructed charge, +1 or -1'),
  'dr': ('float32', (), 'transverse impact parameter to the beam spot, cm'),
  'dz': ('float32', (), 'longitudinal impact parameter, cm'),
  'electronID': ('float32', (), 'L_e / sum L, in [0, 1]'),
  'muonID': ('float32', (), 'L_mu / sum L, in [0, 1]'),
  'pionID': ('float32', (), 'L_pi / sum L, in [0, 1]'),
  'kaonID': ('float32', (), 'L_K / sum L, in [0, 1]'),
  'protonID': ('float32', (), 'L_p / sum L, in [0, 1]'),
  'nPXDHits': ('int8', (), 'number of PXD hits'),
  'nSVDHits': ('int8', (), 'number of SVD hits (both strip sides)'),
  'nCDCHits': ('int8', (), 'number of CDC hits'),
  'pValue': ('float32', (), 'track fit p-value'),
  'mc_pdg': ('int32', (), 'true PDG id'),
  'mc_mother_pdg': ('int32', (), 'true mother PDG id, 0 if none'),
  'mc_grandmother_pdg': ('int32', (), 'true grandmother PDG id, 0 if none'),
  'mc_is_background': ('bool', (), 'track from detector background'),
  'mc_category': ('int8', (), 'tag-side category, see TRACK_CATEGORIES'),
  'mc_p': ('float32', (3,), 'true lab momentum, GeV'),
  'mc_production_vertex': ('float32', (3,), 'true production point, cm'),
}

# Tag-side track categories read off the decay chain (mc_category values).
TRACK_CATEGORIES = (
  'other',
  'primary_lepton',
  'secondary_lepton',
  'kaon',
  'slow_pion',
  'fast_hadron',
  'lambda',
)
CATEGORY_INDEX = {name: i for i, name in enumerate(TRACK_CATEGORIES)}

# Bits of the event column tag_flags, describing the tag B decay.
TAG_FLAGS = (
  'semileptonic_e',  # B -> X e nu (primary electron)
  'semileptonic_mu',  # B -> X mu nu (primary muon)
  'semileptonic_tau',  # B -> X tau nu
  'has_d_star',  # a D*+- in the chain
  'has_d0',  # a D0 or anti-D0 in the chain
  'has_d_plus',  # a D+- in the chain
  'has_kaon_bcs',  # a charged kaon from b -> c -> s
  'has_slow_pion',  # a charged slow pion from D*+-
  'has_lambda',  # a Lambda in the chain
)
FLAG_BIT = {name: 1 << i for i, name in enumerate(TAG_FLAGS)}

MODES = ('nunu', 'flavor_specific', 'jpsi_ks')


class ShardError(ValueError):
  """A shard is missing, truncated, foreign or inconsistent."""


@dataclasses.dataclass
class Events:
  """A chunk of events with ragged tracks.

  Attributes:
    events: Event-level columns, each shape [num_events, ...].
    tracks: Track-level columns, each shape [num_tracks, ...].
    track_offsets: Shape [num_events + 1]; event i owns tracks
      track_offsets[i]:track_offsets[i + 1].
    attrs: File attributes (schema version, mode, seed, settings).
  """

  events: dict[str, np.ndarray]
  tracks: dict[str, np.ndarray]
  track_offsets: np.ndarray
  attrs: dict[str, Any]

  @property
  def num_events(self) -> int:
    return len(self.track_offsets) - 1

  @property
  def num_tracks(self) -> int:
    return int(self.track_offsets[-1])

  def flag(self, name: str) -> np.ndarray:
    """Returns the tag-side flag `name` per event, shape [num_events]."""
    return (self.events['tag_flags'] & FLAG_BIT[name]) != 0

  def take(self, indices: np.ndarray) -> 'Events':
    """Returns the events at `indices` (shape [k]) with their tracks."""
    indices = np.asarray(indices, np.int64)
    starts = self.track_offsets[indices]
    counts = self.track_offsets[indices + 1] - starts
    offsets = offsets_from_counts(counts)
    track_index = np.repeat(starts - offsets[:-1], counts) + np.arange(
      offsets[-1]
    )
    return Events(
      {k: v[indices] for k, v in self.events.items()},
      {k: v[track_index] for k, v in self.tracks.items()},
      offsets,
      dict(self.attrs),
    )

  def charge_flipped(self) -> 'Events':
    """Returns the events with every track's charge flipped, all else kept.

    Flipping exchanges the positive and negative tracks of each event: what
    a tagger sees of the flavor-conjugate rest of event in a detector that
    treats both charges alike (as detector.py does).
    """
    tracks = dict(self.tracks)
    tracks['charge'] = -self.tracks['charge']
    return dataclasses.replace(self, tracks=tracks)

  def event_index(self) -> np.ndarray:
    """Returns the event each track belongs to, shape [num_tracks]."""
    return np.repeat(np.arange(self.num_events), np.diff(self.track_offsets))


def _check_columns(
  found: Mapping[str, np.ndarray],
  schema: Mapping[str, tuple[str, tuple[int, ...], str]],
  length: int,
  where: str,
) -> None:
  missing = sorted(set(schema) - set(found))
  if missing:
    raise ShardError(f'{where}: missing columns {missing}')
  for name, (_, shape, _) in schema.items():
    array = found[name]
    if array.shape != (length, *shape):
      raise ShardError(
        f'{where}: column {name!r} has shape {array.shape}, expected '
        f'{(length, *shape)}'
      )


def offsets_from_counts(n_tracks: np.ndarray) -> np.ndarray:
  """Returns offsets of shape [num_events + 1] from per-event track counts."""
  offsets = np.zeros(len(n_tracks) + 1, np.int64)
  np.cumsum(n_tracks, out=offsets[1:])
  return offsets


def concatenate(chunks: Iterable[Events]) -> Events:
  """Joins chunks of events into one; attributes are taken from the first."""
  chunks = list(chunks)
  if not chunks:
    raise ShardError('no events to concatenate: the list of chunks is empty')
  events = {
    k: np.concatenate([c.events[k] for c in chunks]) for k in EVENT_COLUMNS
  }
  tracks = {
    k: np.concatenate([c.tracks[k] for c in chunks]) for k in TRACK_COLUMNS
  }
  return Events(
    events,
    tracks,
    offsets_from_counts(events['n_tracks']),
    dict(chunks[0].attrs),
  )


def write_shard(path: str | os.PathLike, events: Events) -> pathlib.Path:
  """Writes `events` to an HDF5 shard atomically.

  The file is written under a temporary name in the same folder and renamed
  when complete, so a reader never sees a half-written shard.

  Args:
    path: Destination file name.
    events: The events; `attrs` must hold JSON-serializable values.

  Returns:
    The path written.
  """
  path = pathlib.Path(path)
  _check_columns(events.events, EVENT_COLUMNS, events.num_events, str(path))
  _check_columns(events.tracks, TRACK_COLUMNS, events.num_tracks, str(path))
  counts = np.diff(events.track_offsets)
  if not np.array_equal(counts, events.events['n_tracks']):
    raise ShardError(f'{path}: n_tracks does not match track_offsets')

  with atomic.temporary_path(path) as tmp, h5py.File(tmp, 'w') as f:
    f.attrs['format'] = FORMAT_NAME
    f.attrs['schema_version'] = SCHEMA_VERSION
    f.attrs['num_events'] = events.num_events
    f.attrs['num_tracks'] = events.num_tracks
    for key, value in events.attrs.items():
      if key in ('format', 'schema_version', 'num_events', 'num_tracks'):
        continue
      f.attrs[key] = json.dumps(value)
    f.create_dataset('track_offsets', data=events.track_offsets)
    for group, schema, columns in (
      ('events', EVENT_COLUMNS, events.events),
      ('tracks', TRACK_COLUMNS, events.tracks),
    ):
      g = f.create_group(group)
      for name, (dtype, _, description) in schema.items():
        d = g.create_dataset(name, data=np.asarray(columns[name], dtype))
        d.attrs['description'] = description
  return path


def read_shard(path: str | os.PathLike) -> Events:
  """Reads and checks one shard.

  Raises:
    ShardError: The file is missing, not HDF5, truncated, not an event shard,
      of another schema version, or internally inconsistent.
  """
  path = pathlib.Path(path)
  if not path.is_file():
    raise ShardError(f'{path}: no such shard file')
  try:
    f = h5py.File(path, 'r')
  except OSError as e:
    raise ShardError(
      f'{path}: not a readable HDF5 file (truncated or corrupt?): {e}'
    ) from e
  with f:
    if f.attrs.get('format') != FORMAT_NAME:
      raise ShardError(
        f'{path}: not a flavortag_jax event shard (format attribute is '
        f'{f.attrs.get("format")!r}, expected {FORMAT_NAME!r})'
      )
    version = int(f.attrs.get('schema_version', -1))
    if version != SCHEMA_VERSION:
      raise ShardError(
        f'{path}: schema version {version}, this code reads version '
        f'{SCHEMA_VERSION}; regenerate the events or use a matching release'
      )
    try:
      offsets = f['track_offsets'][()]
      events = {
        k: f['events'][k][()] for k in EVENT_COLUMNS if k in f['events']
      }
      tracks = {
        k: f['tracks'][k][()] for k in TRACK_COLUMNS if k in f['tracks']
      }
    except (KeyError, OSError) as e:
      raise ShardError(f'{path}: unreadable content (truncated?): {e}') from e
    attrs = {}
    for key, value in f.attrs.items():
      if isinstance(value, str) and key != 'format':
        try:
          value = json.loads(value)
        except json.JSONDecodeError:
          pass
      attrs[key] = value.item() if isinstance(value, np.generic) else value

  num_events = len(offsets) - 1
  if num_events != attrs.get('num_events'):
    raise ShardError(
      f'{path}: holds {num_events} events, its header says '
      f'{attrs.get("num_events")}'
    )
  _check_columns(events, EVENT_COLUMNS, num_events, str(path))
  _check_columns(tracks, TRACK_COLUMNS, int(offsets[-1]), str(path))
  if not np.array_equal(np.diff(offsets), events['n_tracks']):
    raise ShardError(f'{path}: n_tracks does not match track_offsets')
  return Events(events, tracks, offsets, attrs)


def shard_paths(data_dir: str | os.PathLike) -> list[pathlib.Path]:
  """Lists the shards of a data folder in order.

  Raises:
    ShardError: The folder does not exist or holds no shard.
  """
  data_dir = pathlib.Path(data_dir)
  if not data_dir.is_dir():
    raise ShardError(f'{data_dir}: no such data folder')
  paths = sorted(data_dir.glob('*.h5'))
  if not paths:
    raise ShardError(
      f'{data_dir}: no shards (*.h5) found; generate events with '
      '`python -m experiments.generate --out_dir=...`'
    )
  return paths


def read_shards(paths: Iterable[str | os.PathLike]) -> Events:
  """Reads several shards into one Events, checking they agree.

  Args:
    paths: The shard files, in the order of their events; any iterable,
      a generator included (it is read once).

  Returns:
    The events of all shards, concatenated.

  Raises:
    ShardError: A shard is bad, the list is empty, or the shards mix schema
      versions or generation modes.
  """
  paths = list(paths)
  chunks = [read_shard(p) for p in paths]
  if not chunks:
    raise ShardError('no shards given')
  first = chunks[0].attrs
  for path, chunk in zip(paths, chunks, strict=True):
    for key in ('schema_version', 'mode'):
      if chunk.attrs.get(key) != first.get(key):
        raise ShardError(
          f'{path}: {key} is {chunk.attrs.get(key)!r} but the first shard '
          f'has {first.get(key)!r}; do not mix shards of different {key}'
        )
  return concatenate(chunks)


def read_data_dir(data_dir: str | os.PathLike) -> Events:
  """Reads every shard of a data folder."""
  return read_shards(shard_paths(data_dir))
