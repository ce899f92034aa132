"""Default run of the deep flavor tagger: the reference network on a CPU.

Every field of a run config is defined and explained here; reference.py and
smoke.py change a few of them. This default keeps the reference network and
optimizer but trains on 200 k events for at most 30 epochs, which a laptop CPU
does in minutes:

  python -m experiments.generate --out_dir=data/default --num_events=200000 \
    --seed=0 --mode=nunu --num_workers=2
  python -m experiments.train --config=experiments/configs/default.py \
    --workdir=runs/default

Override any field on the command line, e.g. `--config.num_epochs=10` or
`--config.model.width=100`.

Expected (measured on 200 k events of seed 0, 2 shared CPU cores, 3 min):
early stopping after epoch 21 with the best validation loss at epoch 11;
validation AUC 0.822 and Q = 31.1 +- 0.8 %, test AUC 0.827 and
Q = 32.5 +- 0.8 %. With 184 k training events the 675 k weights start to
overfit after about 10 epochs; the reference (60 times more events) trains
far longer.
"""

import ml_collections


def get_config():
  config = ml_collections.ConfigDict()
  config.name = 'dnn'

  # Data: a folder of event shards (experiments.generate), its split and the
  # normalization of the features.
  config.data_dir = 'data/default'
  config.split_seed = 0
  config.fractions = (0.92, 0.04, 0.04)  # train, valid, test
  config.num_bins = 1024  # quantile bins per feature
  config.momentum_frame = 'lab'  # frame that ranks the tracks: 'lab' or 'cms'

  # Network (models.MLPConfig).
  config.model = ml_collections.ConfigDict()
  config.model.num_hidden_layers = 8
  config.model.width = 300
  config.model.activation = 'tanh'
  config.model.dropout_rate = 0.0
  config.model.kernel_init = 'truncated_normal'  # actual std 1/sqrt(fan_in)

  # Training (optim.OptimizerConfig and early stopping).
  config.seed = 0
  config.batch_size = 100
  config.num_epochs = 30
  config.min_epochs = 0  # the recipe sets no minimum
  config.patience = 10  # epochs without improvement before stopping
  config.min_relative_improvement = 1e-5
  config.learning_rate = 0.05
  config.learning_rate_decay = 0.97629  # per epoch
  config.learning_rate_floor = 1e-6
  config.momentum_start = 0.9
  config.momentum_end = 0.99
  config.momentum_ramp_epochs = 200
  config.weight_decay = 2e-5  # alpha of the penalty alpha/2 sum W^2
  config.decoupled_weight_decay = False

  # Evaluation, records and checkpoints (0 switches a periodic record off).
  config.eval_batch_size = 16384  # events per forward pass in evaluation
  config.train_eval_size = 100_000  # train events evaluated every epoch
  config.checkpoint_every_epochs = 1
  config.probe_size = 4000  # validation events whose activations are saved
  config.probe_every_epochs = 5
  config.log_histograms_every_epochs = 5

  # Data parallelism over a mesh of devices (flavortag_jax.parallel).
  config.data_parallel = False
  config.num_devices = 0  # 0: every visible device

  return config
