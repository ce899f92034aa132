"""A training run of seconds on a few thousand events, for tests and checks.

A small network (2 x 32) for 4 epochs on the split (70 / 15 / 15 %) of a
folder of a few thousand generated nunu events:

  python -m experiments.generate --out_dir=/tmp/smoke_data --num_events=4000 \
    --seed=1 --mode=nunu
  python -m experiments.train --config=experiments/configs/smoke.py \
    --workdir=/tmp/smoke_run --config.data_dir=/tmp/smoke_data

Expected: finishes in about 10 s on 2 CPU cores (most of it start-up and
compilation), with a validation AUC near 0.8 (0.79 on these 4000 events of
seed 1); Q on 600 events has a statistical error of about 3 %.
"""

from experiments.configs import default


def get_config():
  config = default.get_config()
  config.name = 'dnn_smoke'
  config.data_dir = '/tmp/smoke_data'
  config.fractions = (0.7, 0.15, 0.15)
  config.num_bins = 64
  config.model.num_hidden_layers = 2
  config.model.width = 32
  config.batch_size = 50
  config.num_epochs = 4
  config.min_epochs = 0
  config.learning_rate = 0.1
  config.eval_batch_size = 1024
  config.train_eval_size = 1000
  config.probe_size = 200
  config.probe_every_epochs = 2
  config.log_histograms_every_epochs = 2
  config.checkpoint_every_epochs = 1
  return config
