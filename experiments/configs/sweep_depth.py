"""Q against the number of hidden layers (1 to 10): the depth study.

Every depth is its own compiled program; the seeds of one depth train
together as one vmapped program. The other sweepable settings have values
here too, so `--sweep=weight_decay` (or learning_rate, seed, width,
dropout_rate) runs that sweep with the same data and network.

CPU scale (the default): 1 M generated nunu events split 80 / 10 / 10 %
(larger validation and test splits than the recipe's 4 %, so that the Q of
each point is known to about 0.25 % absolute), networks of width 64,
at most 30 epochs with a patience of 5:

  python -m experiments.generate --out_dir=data/sweep --num_events=1000000 \
    --seed=7 --mode=nunu --num_workers=2
  python -m experiments.sweep --config=experiments/configs/sweep_depth.py \
    --workdir=runs/sweep_depth --config.data_dir=data/sweep

Full scale (`:full`): the reference recipe (width 300, 92 / 4 / 4 % of 12 M
events, up to 400 epochs with early stopping), three seeds per depth:

  python -m experiments.sweep \
    --config=experiments/configs/sweep_depth.py:full \
    --workdir=runs/sweep_depth_full --config.data_dir=data/reference

Expected: Q rises steeply from one to a few hidden layers and then levels
off; the published study found the gain saturating at about 8 layers on
12 M events. At CPU scale the plateau comes earlier and the points scatter
by about their statistical error. Measured at CPU scale (2 cores, 10.5 min):
test Q 31.8 % with one hidden layer, 33.3 % with two, rising slowly to
33.8 % with ten (+- 0.24 % each); the README has the table and plot.
"""

from experiments.configs import default


def get_config(scale: str = 'cpu'):
  """Returns the depth-sweep config; `scale` is 'cpu' (default) or 'full'."""
  if scale not in ('cpu', 'full'):
    raise ValueError(
      f"The config argument must be 'cpu' or 'full', found {scale!r}; "
      'e.g. --config=experiments/configs/sweep_depth.py:full'
    )
  config = default.get_config()
  config.name = 'sweep_depth'

  # Records of single runs are not written in a sweep.
  config.probe_size = 0
  config.probe_every_epochs = 0
  config.log_histograms_every_epochs = 0
  config.checkpoint_every_epochs = 0

  if scale == 'cpu':
    config.data_dir = 'data/sweep'
    config.fractions = (0.8, 0.1, 0.1)
    config.num_bins = 256
    config.model.width = 64
    config.num_epochs = 30
    config.patience = 5
    config.eval_batch_size = 4096
    seeds = (0,)
  else:
    config.data_dir = 'data/reference'
    config.num_epochs = 400
    config.eval_batch_size = 65536
    seeds = (0, 1, 2)

  config.sweep = dict(
    name='depth',
    # Seeds trained for every value (ignored by a sweep over the seed).
    seeds=seeds,
    # Values of every sweepable setting (flavortag_jax.sweeps.PARAMETERS).
    grid=dict(
      depth=tuple(range(1, 11)),
      weight_decay=(0.0, 1e-6, 3e-6, 1e-5, 3e-5, 1e-4, 3e-4, 1e-3),
      learning_rate=(0.005, 0.01, 0.02, 0.05, 0.1, 0.2),
      seed=tuple(range(8)),
      width=(16, 32, 64, 128, 300),
      dropout_rate=(0.0, 0.1, 0.2, 0.3, 0.5),
    ),
  )
  return config
