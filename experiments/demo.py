r"""The whole study on a small built-in sample: `make demo`.

  python -m experiments.demo [--out_dir=runs/demo] [--force]

Generates a training sample (nunu mode) and an independent test sample,
trains the deep tagger (experiments/configs/demo.py) and the category-based
tagger on the training sample, evaluates both on the test sample (the deep
tagger also charge-symmetrized, see report.evaluate), prints the comparison
and writes OUT/report.md with its plots, and OUT/category_table.md with Q of
each category alone on the test sample. TensorBoard logs of the
deep tagger go to OUT/dnn/tensorboard.

A second run reuses every finished stage (and resumes an interrupted
training); --force starts from scratch.
"""

import pathlib
import shutil

from absl import app, flags

from experiments.configs import demo as demo_config
from flavortag_jax import (
  atomic,
  category_tagger,
  report,
  shards,
  study,
  taggers,
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

CATEGORY_TABLE_FILE = 'category_table.md'


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
  stages = study.Stages(total=5)

  stages.begin(f'Generating {_NUM_TRAIN.value} training events')
  study.generate_sample(
    stages, train_dir, _NUM_TRAIN.value, study.TRAIN_SEED, _NUM_WORKERS.value
  )
  stages.begin(f'Generating {_NUM_TEST.value} independent test events')
  study.generate_sample(
    stages, test_dir, _NUM_TEST.value, study.TEST_SEED, _NUM_WORKERS.value
  )
  stages.begin('Training the deep tagger (experiments/configs/demo.py)')
  config = demo_config.get_config()
  config.data_dir = str(train_dir)
  study.train_dnn(stages, config, dnn_dir)
  stages.begin('Training the category-based tagger')
  study.train_categories(
    stages,
    train_dir,
    category_dir,
    category_tagger.CategoryTaggerConfig(
      num_trees=_NUM_TREES.value, combiner_num_trees=_NUM_TREES.value
    ),
  )

  stages.begin('Evaluating both taggers on the test sample')
  events = shards.read_data_dir(test_dir)
  dnn_tagger = taggers.load(dnn_dir)
  dnn = report.evaluate(dnn_tagger, events)
  dnn_symmetric = report.evaluate(dnn_tagger, events, charge_symmetric=True)
  categories, category_figures = study.evaluate_categories(category_dir, events)
  summaries = report.write(
    out_dir,
    [dnn, dnn_symmetric, categories],
    sample=(
      f'{events.num_events} independent nunu events (seed {study.TEST_SEED}), '
      'never used in training.'
    ),
  )
  table = study.category_table(
    category_figures, summaries, [dnn.name, dnn_symmetric.name]
  )
  atomic.write_text(out_dir / CATEGORY_TABLE_FILE, table + '\n')
  print()
  print(f'Test sample: {events.num_events} events never used in training')
  print(study.comparison_table(summaries))
  print(f'\nEach category alone on the same events:\n{table}')
  print(f'\nReport: {out_dir / report.REPORT_FILE}')
  print(f'TensorBoard: tensorboard --logdir {dnn_dir}')
  print(f'Demo wall time: {stages.elapsed / 60:.1f} min')


if __name__ == '__main__':
  app.run(main)
