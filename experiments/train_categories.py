"""Trains the category-based flavor tagger and writes its workdir.

Usage (from the repository root):

  python -m experiments.train_categories --data_dir=data/nunu \
    --workdir=runs/categories

It trains on the same train split as the deep tagger
(pipeline.split_indices with --split_seed and --fractions), evaluates on the
validation and test splits, and writes the LightGBM models, tagger.json,
metrics.json (valid and test summaries; per-category Q and candidate AUC on
the test split under "categories") and outputs.npz, for
`python -m experiments.evaluate`. It ends by printing the per-category Q
table. `--num_trees=20 --combiner_num_trees=20` gives a quick run; the
defaults are the experiment's 500 trees of depth 3.

To print the table of a finished run again:

  python -m experiments.train_categories --workdir=runs/categories \
    --print_table
"""

import json
import pathlib

from absl import app, flags, logging

from flavortag_jax import category_tagger

_DATA_DIR = flags.DEFINE_string('data_dir', None, 'Folder of event shards.')
_WORKDIR = flags.DEFINE_string('workdir', None, 'Output folder.')
_SPLIT_SEED = flags.DEFINE_integer(
  'split_seed', 0, 'Seed of the train/valid/test split (as the DNN).'
)
_FRACTIONS = flags.DEFINE_list(
  'fractions', ['0.92', '0.04', '0.04'], 'Train, valid, test fractions.'
)
_NUM_TREES = flags.DEFINE_integer(
  'num_trees', 500, 'Trees per category classifier.'
)
_COMBINER_NUM_TREES = flags.DEFINE_integer(
  'combiner_num_trees', 500, 'Trees of the combiner.'
)
_COMBINER_FRACTION = flags.DEFINE_float(
  'combiner_fraction', 0.5, 'Share of the train split kept for the combiner.'
)
_MAX_COMBINER_EVENTS = flags.DEFINE_integer(
  'max_combiner_events', 250_000, 'At most this many combiner events.'
)
_NUM_THREADS = flags.DEFINE_integer('num_threads', 2, 'LightGBM threads.')
_SEED = flags.DEFINE_integer('seed', 0, 'Seed of the training.')
_PRINT_TABLE = flags.DEFINE_bool(
  'print_table', False, 'Only print the table of a finished --workdir.'
)
flags.mark_flags_as_required(['workdir'])


def main(argv):
  del argv
  workdir = pathlib.Path(_WORKDIR.value)
  if _PRINT_TABLE.value:
    path = workdir / category_tagger.METRICS_FILE
    if not path.is_file():
      raise SystemExit(f'train_categories: {path} not found; train first')
    print(category_tagger.category_table(json.loads(path.read_text())))
    return
  if _DATA_DIR.value is None:
    raise SystemExit('train_categories: --data_dir is required to train')
  try:
    fractions = tuple(float(f) for f in _FRACTIONS.value)
    config = category_tagger.CategoryTaggerConfig(
      num_trees=_NUM_TREES.value,
      combiner_num_trees=_COMBINER_NUM_TREES.value,
      combiner_fraction=_COMBINER_FRACTION.value,
      max_combiner_events=_MAX_COMBINER_EVENTS.value,
      num_threads=_NUM_THREADS.value,
      seed=_SEED.value,
    )
    logging.info('Training the category tagger into %s: %s', workdir, config)
    results = category_tagger.train_and_evaluate(
      _DATA_DIR.value, workdir, config, _SPLIT_SEED.value, fractions
    )
  except ValueError as e:
    raise SystemExit(f'train_categories: {e}') from e
  print(category_tagger.category_table(results))


if __name__ == '__main__':
  app.run(main)
