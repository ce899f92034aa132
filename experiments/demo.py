r"""The whole study on a small built-in sample: `make demo`.

  python -m experiments.demo [--out_dir=runs/demo] [--force]

Generates a training sample (nunu mode) and an independent test sample,
trains the deep tagger (experiments/configs/demo.py) and the category-based
tagger on the training sample, evaluates both on the test sample, prints the
comparison and writes OUT/report.md with its plots, and OUT/category_table.md
with Q of each category alone on the test sample. TensorBoard logs of the
deep tagger go to OUT/dnn/tensorboard.

A second run reuses every finished stage (and resumes an interrupted
training); --force starts from scratch.
"""

import json
import pathlib
import shutil
import time

from absl import app, flags, logging

from experiments.configs import demo as demo_config
from flavortag_jax import (
  atomic,
  category_tagger,
  generator,
  report,
  shards,
  taggers,
  train,
  writers,
)

_OUT_DIR = flags.DEFINE_string('out_dir', 'runs/demo', 'Output folder.')
_FORCE = flags.DEFINE_bool('force', False, 'Redo every stage.')
_NUM_TRAIN = flags.DEFINE_integer(
  'num_train_events', 150_000, 'Events of the training sample.'
)
_NUM_TEST = flags.DEFINE_integer(
  'num_test_events', 100_000, 'Events of the independent test sample.'
)
_NUM_WORKERS = flags.DEFINE_integer(
  'num_workers', 2, 'Processes for event generation.'
)
_NUM_TREES = flags.DEFINE_integer(
  'num_trees', 200, 'Trees per category classifier and in the combiner.'
)

TRAIN_SEED = 0
TEST_SEED = 1_000_003
DONE_FILE = 'stage.json'
CATEGORY_TABLE_FILE = 'category_table.md'


class Stages:
  """Numbers the stages, logs their progress and skips finished ones."""

  def __init__(self, out_dir: pathlib.Path, total: int):
    self.out_dir = out_dir
    self.total = total
    self.number = 0
    self.start = time.perf_counter()

  def begin(self, what: str) -> None:
    self.number += 1
    logging.info(
      '[%d/%d] %s (%.0f s into the demo)',
      self.number,
      self.total,
      what,
      time.perf_counter() - self.start,
    )

  @staticmethod
  def finished(folder: pathlib.Path, settings: dict) -> bool:
    """True if `folder` holds a finished stage run with `settings`."""
    path = folder / DONE_FILE
    return path.is_file() and json.loads(path.read_text()) == settings

  @staticmethod
  def mark_finished(folder: pathlib.Path, settings: dict) -> None:
    atomic.write_text(folder / DONE_FILE, json.dumps(settings, sort_keys=True))


def generate_sample(stages, folder, num_events, seed):
  settings = {'num_events': num_events, 'seed': seed, 'mode': 'nunu'}
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
    events_per_shard=25_000,
    num_workers=_NUM_WORKERS.value,
    progress=True,
  )
  logging.info('Generated into %s:\n%s', folder, summary.format())
  stages.mark_finished(folder, settings)


def train_dnn(stages, data_dir, workdir):
  config = demo_config.get_config()
  config.data_dir = str(data_dir)
  settings = json.loads(config.to_json())
  if stages.finished(workdir, settings):
    logging.info('Reusing the trained deep tagger in %s', workdir)
    return
  train.train_and_evaluate(config, workdir)
  stages.mark_finished(workdir, settings)


def train_categories(stages, data_dir, workdir):
  config = category_tagger.CategoryTaggerConfig(
    num_trees=_NUM_TREES.value, combiner_num_trees=_NUM_TREES.value
  )
  settings = {'data_dir': str(data_dir), 'config': repr(config)}
  if stages.finished(workdir, settings):
    logging.info('Reusing the trained category tagger in %s', workdir)
    return
  results = category_tagger.train_and_evaluate(data_dir, workdir, config)
  print(category_tagger.category_table(results))
  stages.mark_finished(workdir, settings)


def evaluate_categories(workdir, events):
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


def category_table(figures, summaries, dnn_name) -> str:
  """Formats Q of each category alone, the combination and the deep tagger."""
  lines = ['| tagger | Q (%) |', '| --- | --- |']
  rows = [(name, f['q'], f['q_err']) for name, f in figures.items()]
  for name in (category_tagger.TAGGER_NAME, dnn_name):
    rows.append((name, summaries[name]['q'], summaries[name]['q_err']))
  for name, q, q_err in rows:
    lines.append(f'| {name} | {100 * q:.2f} +- {100 * q_err:.2f} |')
  return '\n'.join(lines)


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


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  writers.quiet_checkpoint_progress()
  out_dir = pathlib.Path(_OUT_DIR.value)
  if _FORCE.value and out_dir.exists():
    shutil.rmtree(out_dir)
  out_dir.mkdir(parents=True, exist_ok=True)
  train_dir, test_dir = out_dir / 'data' / 'train', out_dir / 'data' / 'test'
  dnn_dir, category_dir = out_dir / 'dnn', out_dir / 'categories'
  stages = Stages(out_dir, total=5)

  stages.begin(f'Generating {_NUM_TRAIN.value} training events')
  generate_sample(stages, train_dir, _NUM_TRAIN.value, TRAIN_SEED)
  stages.begin(f'Generating {_NUM_TEST.value} independent test events')
  generate_sample(stages, test_dir, _NUM_TEST.value, TEST_SEED)
  stages.begin('Training the deep tagger (experiments/configs/demo.py)')
  train_dnn(stages, train_dir, dnn_dir)
  stages.begin('Training the category-based tagger')
  train_categories(stages, train_dir, category_dir)

  stages.begin('Evaluating both taggers on the test sample')
  events = shards.read_data_dir(test_dir)
  dnn = report.evaluate(taggers.load(dnn_dir), events)
  categories, category_figures = evaluate_categories(category_dir, events)
  summaries = report.write(
    out_dir,
    [dnn, categories],
    sample=(
      f'{events.num_events} independent nunu events (seed {TEST_SEED}), '
      'never used in training.'
    ),
  )
  table = category_table(category_figures, summaries, dnn.name)
  atomic.write_text(out_dir / CATEGORY_TABLE_FILE, table + '\n')
  elapsed = time.perf_counter() - stages.start
  print()
  print(f'Test sample: {events.num_events} events never used in training')
  print(comparison_table(summaries))
  print(f'\nEach category alone on the same events:\n{table}')
  print(f'\nReport: {out_dir / report.REPORT_FILE}')
  print(f'TensorBoard: tensorboard --logdir {dnn_dir}')
  print(f'Demo wall time: {elapsed / 60:.1f} min')


if __name__ == '__main__':
  app.run(main)
