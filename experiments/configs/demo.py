"""The deep tagger of `make demo`: the default run, sized for about 10 minutes.

  python -m experiments.demo

trains it on the demo's generated training sample (runs/demo/data/train); to
train it alone on a folder of your own:

  python -m experiments.train --config=experiments/configs/demo.py \
    --workdir=runs/demo_dnn --config.data_dir=DIR

Expected: the reference network (8 x 300 tanh) with the reference optimizer,
stopped after at most 25 epochs; on 150 k generated events its test Q comes
out below the category-based tagger's (see the README for the measured
figures and the scale at which the deep tagger overtakes).
"""

from experiments.configs import default


def get_config():
  config = default.get_config()
  config.name = 'dnn'
  config.data_dir = 'runs/demo/data/train'
  config.num_epochs = 25
  config.train_eval_size = 20_000
  return config
