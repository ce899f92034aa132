"""Trains the deep flavor tagger: `train.train_and_evaluate` from flags.

Usage (from the repository root):

  python -m experiments.train --config=experiments/configs/default.py \
    --workdir=runs/default --config.data_dir=data/default

Starting again with the same --workdir resumes an interrupted run. Each
config file's docstring gives its data, its command and what it reaches.
"""

from absl import app, flags, logging
import jax
from ml_collections import config_flags

from flavortag_jax import parallel, train, writers

_WORKDIR = flags.DEFINE_string(
  'workdir', None, 'Folder for checkpoints, logs and the trained tagger.'
)
config_flags.DEFINE_config_file(
  'config', None, 'Path to a run config file.', lock_config=True
)
parallel.define_flags()
flags.mark_flags_as_required(['config', 'workdir'])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  writers.quiet_checkpoint_progress()
  parallel.initialize_from_flags()
  logging.info('JAX %s; %s', jax.__version__, parallel.describe_devices())
  config = flags.FLAGS.config
  logging.info('Config:\n%s', config)
  results = train.train_and_evaluate(config, _WORKDIR.value)
  logging.info(
    'Test split: Q = %.4f +- %.4f, AUC = %.4f',
    results['test']['q'],
    results['test']['q_err'],
    results['test']['auc'],
  )


if __name__ == '__main__':
  app.run(main)
