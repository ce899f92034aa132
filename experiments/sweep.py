"""Runs a hyperparameter sweep: `sweeps.run_sweep` from flags.

Usage (from the repository root):

  python -m experiments.sweep --config=experiments/configs/sweep_depth.py \
    --workdir=runs/sweep_depth --config.data_dir=data/sweep
  python -m experiments.sweep \
    --config=experiments/configs/sweep_weight_decay.py:full \
    --workdir=runs/sweep_weight_decay_full --config.data_dir=data/reference

`--sweep` picks the swept setting (default: the config's own, see
flavortag_jax.sweeps.PARAMETERS); its values come from
config.sweep.grid.NAME and can be overridden, e.g.
`--sweep=learning_rate --config.sweep.grid.learning_rate='(0.01,0.1)'`.
The workdir receives sweep.json (one record per model), q_vs_NAME.png and
per-model TensorBoard logs. With `--config.data_parallel=True` every group
also splits its batches over the devices; add `--distributed` on several
hosts (see flavortag_jax.parallel).
"""

from absl import app, flags, logging
import jax
from ml_collections import config_flags

from flavortag_jax import parallel, sweeps, writers

_WORKDIR = flags.DEFINE_string(
  'workdir', None, 'Folder for sweep.json, the plot and TensorBoard logs.'
)
_SWEEP = flags.DEFINE_enum(
  'sweep',
  None,
  sorted(sweeps.PARAMETERS),
  'Setting to sweep; default: config.sweep.name.',
)
config_flags.DEFINE_config_file(
  'config', None, 'Path to a sweep config file.', lock_config=True
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
  records = sweeps.run_sweep(config, _WORKDIR.value, _SWEEP.value)
  for record in records:
    logging.info(
      '%-28s test Q = %.4f +- %.4f, AUC = %.4f, %d epochs',
      record['model'],
      record['test']['q'],
      record['test']['q_err'],
      record['test']['auc'],
      record['epochs'],
    )


if __name__ == '__main__':
  app.run(main)
