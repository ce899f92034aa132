"""Q against the L2 weight decay (0 and 1e-6 to 1e-3): the decay study.

The eight values train together as one vmapped program on the same batches,
each with its own early stopping, on the recipe's 8 hidden layers. Data,
splits and CPU/full scale as in sweep_depth.py:

  python -m experiments.sweep \
    --config=experiments/configs/sweep_weight_decay.py \
    --workdir=runs/sweep_weight_decay --config.data_dir=data/sweep
  python -m experiments.sweep \
    --config=experiments/configs/sweep_weight_decay.py:full \
    --workdir=runs/sweep_weight_decay_full --config.data_dir=data/reference

Expected: a broad optimum around the recipe's 2e-5; at 1e-3 the penalty
shrinks the weights enough to cost Q. With few events (CPU scale) the
network overtrains less visibly and small decays change Q by less than its
statistical error. Measured at CPU scale (2 cores, 10.3 min): test Q
33.0 % without decay, 33.7 % at 3e-5, 32.0 % at 3e-4 and 29.6 % at 1e-3
(+- 0.24 % each); the README has the table and plot.
"""

from experiments.configs import sweep_depth


def get_config(scale: str = 'cpu'):
  """Returns the weight-decay sweep config; `scale` is 'cpu' or 'full'."""
  config = sweep_depth.get_config(scale)
  config.name = 'sweep_weight_decay'
  config.sweep.name = 'weight_decay'
  return config
