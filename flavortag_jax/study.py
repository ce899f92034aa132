"""Stages of a tagger comparison that skip the work already done.

A comparison study (`experiments.demo`, `experiments.scale`) generates
samples, trains the deep and the category-based tagger and evaluates both on
an independent test sample. Each finished stage leaves `stage.json` with its
settings in its folder; a later run with the same settings reuses the stage,
and an interrupted training resumes from its checkpoint.
"""

from collections.abc import Sequence
import json
import pathlib
import shutil
import time

from absl import logging
import ml_collections

from flavortag_jax import (
  atomic,
  category_tagger,
  generator,
  report,
  shards,
  taggers,
  train,
)

DONE_FILE = 'stage.json'
# Seeds of a study's training samples and of its independent test sample.
TRAIN_SEED = 0
TEST_SEED = 1_000_003
# Events per shard of a study's samples: the same for every size, so that a
# larger sample of one seed holds a smaller one as its first shards.
EVENTS_PER_SHARD = 25_000


class Stages:
  """Numbers the stages, logs their progress and skips finished ones."""

  def __init__(self, total: int):
    self.total = total
    self.number = 0
    self.start = time.perf_counter()

  @property
  def elapsed(self) -> float:
    """Seconds since the study started."""
    return time.perf_counter() - self.start

  def begin(self, what: str) -> None:
    self.number += 1
    logging.info(
      '[%d/%d] %s (%.0f s into the study)',
      self.number,
      self.total,
      what,
      self.elapsed,
    )

  @staticmethod
  def finished(folder: pathlib.Path, settings: dict) -> bool:
    """True if `folder` holds a finished stage run with `settings`."""
    path = folder / DONE_FILE
    return path.is_file() and json.loads(path.read_text()) == settings

  @staticmethod
  def mark_finished(folder: pathlib.Path, settings: dict) -> None:
    atomic.write_text(folder / DONE_FILE, json.dumps(settings, sort_keys=True))


def generate_sample(
  stages: Stages,
  folder: pathlib.Path,
  num_events: int,
  seed: int,
  num_workers: int,
  events_per_shard: int = EVENTS_PER_SHARD,
) -> None:
  """Generates `num_events` nunu events of `seed` into `folder`."""
  settings = {
    'num_events': num_events,
    'seed': seed,
    'mode': 'nunu',
    'events_per_shard': events_per_shard,
  }
  if stages.finished(folder, settings):
    logging.info('Reusing %s', folder)
    return
  if folder.exists():
    shutil.rmtree(folder)
  summary = generator.generate(
    folder,
    num_events,
    seed,
    'nunu',
    events_per_shard=events_per_shard,
    num_workers=num_workers,
    progress=True,
  )
  logging.info('Generated into %s:\n%s', folder, summary.format())
  stages.mark_finished(folder, settings)


def train_dnn(
  stages: Stages, config: ml_collections.ConfigDict, workdir: pathlib.Path
) -> None:
  """Trains the deep tagger with `config` into `workdir`."""
  settings = json.loads(config.to_json())
  if stages.finished(workdir, settings):
    logging.info('Reusing the trained deep tagger in %s', workdir)
    return
  train.train_and_evaluate(config, workdir)
  stages.mark_finished(workdir, settings)


def train_categories(
  stages: Stages,
  data_dir: pathlib.Path,
  workdir: pathlib.Path,
  config: category_tagger.CategoryTaggerConfig,
) -> None:
  """Trains the category-based tagger on `data_dir` into `workdir`."""
  settings = {'data_dir': str(data_dir), 'config': repr(config)}
  if stages.finished(workdir, settings):
    logging.info('Reusing the trained category tagger in %s', workdir)
    return
  results = category_tagger.train_and_evaluate(data_dir, workdir, config)
  print(category_tagger.category_table(results))
  stages.mark_finished(workdir, settings)


def evaluate_categories(
  workdir: pathlib.Path, events: shards.Events
) -> tuple[report.Evaluation, dict]:
  """Runs the category tagger on `events`, keeping each category's figures."""
  tagger, _ = category_tagger.load(workdir)
  qr, figures = category_tagger.evaluate_categories(tagger, events)
  evaluation = report.Evaluation(
    name=category_tagger.TAGGER_NAME,
    kind='category',
    qr=qr,
    q_true=events.events['q_tag'],
    outputs=taggers.read_outputs(workdir),
    workdir=str(workdir),
  )
  return evaluation, figures


def comparison_table(summaries: dict[str, dict]) -> str:
  """Formats Q +- error, AUC and the Q ratio to the category-based tagger."""
  reference = summaries.get(category_tagger.TAGGER_NAME)
  lines = [
    f'{"tagger":<18} {"Q [%]":>14} {"Q / Q(cat)":>12} {"AUC":>8} {"events":>8}',
  ]
  for name, s in summaries.items():
    ratio = s['q'] / reference['q'] if reference else float('nan')
    q = f'{100 * s["q"]:.2f} +- {100 * s["q_err"]:.2f}'
    lines.append(
      f'{name:<18} {q:>14} {ratio:>12.3f} {s["auc"]:>8.4f} {s["n_events"]:>8d}'
    )
  return '\n'.join(lines)


def category_table(
  figures: dict[str, dict],
  summaries: dict[str, dict],
  others: Sequence[str],
) -> str:
  """Formats Q of each category alone, the combination and other taggers.

  Args:
    figures: Per-category figures (category_tagger.evaluate_categories).
    summaries: metrics.summary per tagger name (report.write).
    others: Names in `summaries` listed after the combination.
  """
  lines = ['| tagger | Q (%) |', '| --- | --- |']
  rows = [(name, f['q'], f['q_err']) for name, f in figures.items()]
  for name in (category_tagger.TAGGER_NAME, *others):
    rows.append((name, summaries[name]['q'], summaries[name]['q_err']))
  for name, q, q_err in rows:
    lines.append(f'| {name} | {100 * q:.2f} +- {100 * q_err:.2f} |')
  return '\n'.join(lines)
