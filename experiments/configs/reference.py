"""The full reference recipe of the deep flavor tagger (DESIGN).

8 hidden tanh layers of 300 units, batch 100, momentum SGD with the learning
rate 0.05 x 0.97629^epoch (floor 1e-6), momentum 0.9 -> 0.99 over 200 epochs,
L2 weight decay 2e-5 on the kernels, early stopping after 10 epochs without a
relative improvement of 1e-5, up to 400 epochs, on 12 M nunu events
(92 / 4 / 4 % split). Sized for one GPU or TPU: the train split (11 M x 140
float32, 6.2 GB) stays in device memory and an epoch is one compiled loop.

  python -m experiments.generate --out_dir=data/reference --num_events=12000000 \
    --seed=0 --mode=nunu --num_workers=16
  python -m experiments.train --config=experiments/configs/reference.py \
    --workdir=runs/reference --config.data_dir=data/reference

Expected: on Belle II simulation the experiment reached Q = 40.7 % with this
recipe, 1.22 times its category-based tagger. This config has not yet been run
to the end on our generated events (it needs an accelerator); compare both
taggers' Q on the same test split with experiments.evaluate.
"""

from experiments.configs import default


def get_config():
  config = default.get_config()
  config.name = 'dnn_reference'
  config.data_dir = 'data/reference'
  config.model.num_hidden_layers = 8
  config.model.width = 300
  config.num_epochs = 400
  config.eval_batch_size = 65536
  config.probe_size = 5000
  config.probe_every_epochs = 10
  config.log_histograms_every_epochs = 10
  config.checkpoint_every_epochs = 5
  return config
