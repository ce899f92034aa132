"""Speed of a vmapped sweep of K models against K sequential runs.

Both train the same K = 8 models (the weight-decay values of the decay study,
one network shape) for one epoch on the same batches of seeded synthetic
events: once as one jitted, vmapped epoch (sweeps.sweep_epoch) and once as K
calls of the jitted single-model epoch (train.train_epoch), compiled once and
reused. Compilation is excluded from both rates; the best of a few timed
epochs is kept. The script prints events per second (model-events: K times
the events of an epoch) of each and their ratio, and the compilation time of
the vmapped program and of the single-model one, which K separate training
runs each pay.

  python -m benchmarks.sweep
  python -m benchmarks.sweep --width=300   # the reference network

Aim: the vmapped sweep several times faster than the sequential runs. The
gain comes from one program launching each step's operations once for K
models: large where one small model leaves the device idle (GPUs and TPUs,
or tiny networks on a CPU), small or absent where one model's matrix
products already keep the device busy, as for the CPU-scale study network
(8 hidden layers of 64) on a CPU, where the arithmetic is the same either
way and the sweep gains only the single compilation.
"""

import time

from absl import app, flags
import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import timing
from experiments.configs import sweep_weight_decay
from flavortag_jax import optim, sweeps, train

_NUM_EVENTS = flags.DEFINE_integer(
  'num_events', 20_000, 'Events per timed epoch.'
)
_NUM_MODELS = flags.DEFINE_integer('num_models', 8, 'Models K of the sweep.')
_WIDTH = flags.DEFINE_integer('width', 64, 'Units per hidden layer.')
_DEPTH = flags.DEFINE_integer('depth', 8, 'Hidden layers.')
_BATCH_SIZE = flags.DEFINE_integer('batch_size', 100, 'Events per batch.')
_REPEATS = flags.DEFINE_integer('repeats', 3, 'Timed epochs (best is kept).')


def main(argv):
  del argv
  config = sweep_weight_decay.get_config()
  del config['sweep']
  config.model.width = _WIDTH.value
  config.model.num_hidden_layers = _DEPTH.value
  config.batch_size = _BATCH_SIZE.value
  decays = np.geomspace(1e-6, 1e-3, _NUM_MODELS.value)
  configs = [
    p.config for p in sweeps.sweep_points(config, 'weight_decay', decays)
  ]

  rng = np.random.default_rng(0)
  steps = _NUM_EVENTS.value // _BATCH_SIZE.value
  x = jnp.asarray(
    rng.uniform(-1, 1, (steps, _BATCH_SIZE.value, 140)).astype(np.float32)
  )
  y = jnp.asarray(
    (rng.random((steps, _BATCH_SIZE.value)) < 0.5).astype(np.float32)
  )
  keys = jnp.stack([jax.random.key(k) for k in range(len(configs))])
  opt_configs = [optim.OptimizerConfig.from_config(c) for c in configs]

  # One program for the K models.
  stacked = sweeps.stack_train_states(configs)
  stacked = stacked.replace(
    opt_state=sweeps.set_epoch(stacked.opt_state, opt_configs, 0)
  )
  active = jnp.ones(len(configs), bool)
  holder = {'stacked': stacked}

  def vmapped():
    holder['stacked'], metrics = sweeps.sweep_epoch(
      holder['stacked'], x, y, keys, active
    )
    metrics['loss'].block_until_ready()

  # K runs of the single-model program, one after the other.
  epoch = jax.jit(train.train_epoch, donate_argnums=0)
  holder['single'] = [
    train.create_train_state(c, jax.random.fold_in(jax.random.key(c.seed), 0))
    for c in configs
  ]

  def sequential():
    for k in range(len(configs)):
      holder['single'][k], metrics = epoch(holder['single'][k], x, y, keys[k])
      metrics['loss'].block_until_ready()

  start = time.perf_counter()
  sweeps.sweep_epoch.lower(stacked, x, y, keys, active).compile()
  vmapped_compile = time.perf_counter() - start
  start = time.perf_counter()
  jax.jit(train.train_epoch).lower(holder['single'][0], x, y, keys[0]).compile()
  single_compile = time.perf_counter() - start

  model_events = len(configs) * steps * _BATCH_SIZE.value
  vmapped_rate = model_events / timing.best_time(vmapped, _REPEATS.value)
  sequential_rate = model_events / timing.best_time(sequential, _REPEATS.value)
  print(
    f'K = {len(configs)} models of {_DEPTH.value} x {_WIDTH.value} tanh, '
    f'batch {_BATCH_SIZE.value}, {steps} steps per epoch, '
    f'{jax.device_count()} {jax.devices()[0].platform} device(s)'
  )
  print(f'vmapped sweep:    {vmapped_rate:12.0f} model-events/s')
  print(f'sequential runs:  {sequential_rate:12.0f} model-events/s')
  print(f'ratio vmapped / sequential: {vmapped_rate / sequential_rate:.2f}')
  print(
    f'compilation: vmapped program {vmapped_compile:.2f} s, single-model '
    f'program {single_compile:.2f} s (x {len(configs)} separate runs = '
    f'{len(configs) * single_compile:.2f} s)'
  )


if __name__ == '__main__':
  app.run(main)
