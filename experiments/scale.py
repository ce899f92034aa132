r"""Q of both taggers against the number of training events.

  python -m experiments.scale [--out_dir=runs/scale] \
    [--train_sizes=150000,500000,1500000] [--config.num_epochs=...]

For each size N: N generated nunu training events (seed 0, shards of 25 k
events, so a larger sample begins with the events of every smaller one and
the 150 k sample is the demo's), the deep tagger trained on them with
--config (experiments/configs/default.py) and the category-based tagger with
--num_trees trees (200, as in the demo). Both are evaluated on one
independent sample of 100 k test events (the demo's test seed), the deep
tagger also charge-symmetrized (report.evaluate). Prints the
table and writes it to OUT/scale.md, the figures to OUT/scale.json, and
for each size the report of both taggers (OUT/train_N/report/) and Q of each
category alone beside both taggers (OUT/train_N/category_table.md).

Every finished stage is reused by a second run, so a size can be added
later at the cost of that size alone.
"""

import json
import pathlib

from absl import app, flags
from ml_collections import config_flags

from flavortag_jax import (
  atomic,
  category_tagger,
  report,
  shards,
  study,
  taggers,
  writers,
)

_CONFIG = config_flags.DEFINE_config_file(
  'config', 'experiments/configs/default.py', 'Deep tagger run config.'
)
_OUT_DIR = flags.DEFINE_string('out_dir', 'runs/scale', 'Output folder.')
_TRAIN_SIZES = flags.DEFINE_list(
  'train_sizes',
  ['150000', '500000', '1500000'],
  'Numbers of generated training events, one study point each.',
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

SCALE_TABLE_FILE = 'scale.md'
CATEGORY_TABLE_FILE = 'category_table.md'
SCALE_JSON_FILE = 'scale.json'


def train_sizes(values: list[str]) -> list[int]:
  """Parses --train_sizes: positive event counts in increasing order."""
  try:
    sizes = [int(v) for v in values]
  except ValueError as e:
    raise app.UsageError(f'--train_sizes takes integers, found {values}') from e
  if not sizes or min(sizes) <= 0 or sizes != sorted(set(sizes)):
    raise app.UsageError(
      f'--train_sizes must be positive and increasing, found {sizes}'
    )
  return sizes


def scale_table(points: list[dict]) -> str:
  """Formats one row per training size: Q of the taggers and their ratio."""
  lines = [
    '| training events | DNN Q [%] | DNN C-sym Q [%] | category Q [%] '
    '| Q(DNN C-sym) / Q(cat) | DNN C-sym AUC | category AUC '
    '| DNN best epoch / epochs |',
    '| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
  ]

  def q(s):
    return f'{100 * s["q"]:.2f} +- {100 * s["q_err"]:.2f}'

  for p in points:
    dnn, sym, cat = p['dnn'], p['dnn_symmetric'], p['category']
    lines.append(
      f'| {p["train_events"]:,} | {q(dnn)} | {q(sym)} | {q(cat)} '
      f'| {sym["q"] / cat["q"]:.3f} | {sym["auc"]:.4f} | {cat["auc"]:.4f} '
      f'| {p["best_epoch"]} / {p["epochs"]} |'
    )
  return '\n'.join(lines)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  sizes = train_sizes(_TRAIN_SIZES.value)
  writers.quiet_checkpoint_progress()
  out_dir = pathlib.Path(_OUT_DIR.value)
  out_dir.mkdir(parents=True, exist_ok=True)
  test_dir = out_dir / 'data' / 'test'
  stages = study.Stages(total=1 + 3 * len(sizes))

  stages.begin(f'Generating {_NUM_TEST.value} independent test events')
  study.generate_sample(
    stages, test_dir, _NUM_TEST.value, study.TEST_SEED, _NUM_WORKERS.value
  )
  events = shards.read_data_dir(test_dir)
  points = []
  for size in sizes:
    point_dir = out_dir / f'train_{size}'
    data_dir = point_dir / 'data'
    stages.begin(f'Generating {size} training events')
    study.generate_sample(
      stages, data_dir, size, study.TRAIN_SEED, _NUM_WORKERS.value
    )
    stages.begin(f'Training the deep tagger on {size} events')
    config = _CONFIG.value.copy_and_resolve_references()
    config.data_dir = str(data_dir)
    study.train_dnn(stages, config, point_dir / 'dnn')
    stages.begin(f'Training the category-based tagger on {size} events')
    study.train_categories(
      stages,
      data_dir,
      point_dir / 'categories',
      category_tagger.CategoryTaggerConfig(
        num_trees=_NUM_TREES.value, combiner_num_trees=_NUM_TREES.value
      ),
    )

    dnn_tagger = taggers.load(point_dir / 'dnn')
    dnn = report.evaluate(dnn_tagger, events)
    dnn_symmetric = report.evaluate(dnn_tagger, events, charge_symmetric=True)
    categories, category_figures = study.evaluate_categories(
      point_dir / 'categories', events
    )
    summaries = report.write(
      point_dir / 'report',
      [dnn, dnn_symmetric, categories],
      sample=(
        f'{events.num_events} independent nunu events '
        f'(seed {study.TEST_SEED}); taggers trained on {size} events.'
      ),
    )
    atomic.write_text(
      point_dir / CATEGORY_TABLE_FILE,
      study.category_table(
        category_figures, summaries, [dnn.name, dnn_symmetric.name]
      )
      + '\n',
    )
    print(f'\n{size} training events:\n{study.comparison_table(summaries)}')
    trained = dnn_tagger.description
    points.append(
      {
        'train_events': size,
        'dnn': summaries[dnn.name],
        'dnn_symmetric': summaries[dnn_symmetric.name],
        'category': summaries[categories.name],
        'epochs': trained['epochs_trained'],
        'best_epoch': trained['best_epoch'],
      }
    )

  table = scale_table(points)
  atomic.write_text(out_dir / SCALE_TABLE_FILE, table + '\n')
  atomic.write_text(
    out_dir / SCALE_JSON_FILE, json.dumps(points, indent=2) + '\n'
  )
  print(f'\nTest sample: {events.num_events} events never used in training')
  print(table)
  print(f'\nScale study wall time: {stages.elapsed / 60:.1f} min')


if __name__ == '__main__':
  app.run(main)
