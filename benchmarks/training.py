"""Speed of the jitted training epoch against an eager PyTorch loop.

Both train the reference network (8 tanh layers of 300 and one output, on
140 inputs) with binary cross-entropy and momentum SGD with L2 decay on the
kernels, on the same batches of seeded synthetic events, at batch 100 and
batch 1000. The script prints events per second of each and their ratio, the
machine's measured float32 matmul rate (a 4096 x 4096 product in jnp and in
numpy), and the FLOP rate the JAX epoch achieves as a fraction of it.

PyTorch is needed only here (requirements-bench.txt):

  .venv/bin/pip install -r requirements-bench.txt
  python -m benchmarks.training

Aims: at least 1.3 times PyTorch's rate at batch 100, and at least half the
measured matmul rate at batch 1000.
"""

from absl import app, flags
import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import timing
from experiments.configs import default
from flavortag_jax import features, train

_NUM_EVENTS = flags.DEFINE_integer(
  'num_events', 40_000, 'Events per timed epoch.'
)
_BATCH_SIZES = flags.DEFINE_list(
  'batch_sizes', ['100', '1000'], 'Batch sizes to time.'
)
_REPEATS = flags.DEFINE_integer('repeats', 3, 'Timed epochs (best is kept).')
_MATMUL_SIZE = flags.DEFINE_integer(
  'matmul_size', 4096, 'Side of the square matmul that sets the rate.'
)
_SEED = flags.DEFINE_integer('seed', 0, 'Seed of the synthetic events.')


def matmul_rates(size: int, repeats: int) -> dict[str, float]:
  """FLOP/s of a float32 [size, size] x [size, size] product (2 size^3)."""
  rng = np.random.default_rng(0)
  a = rng.normal(size=(size, size)).astype(np.float32)
  b = rng.normal(size=(size, size)).astype(np.float32)
  flops = 2.0 * size**3
  ja, jb = jnp.asarray(a), jnp.asarray(b)
  matmul = jax.jit(jnp.matmul)
  return {
    'jnp': flops
    / timing.best_time(lambda: matmul(ja, jb).block_until_ready(), 2 * repeats),
    'numpy': flops / timing.best_time(lambda: a @ b, 2 * repeats),
  }


def layer_sizes(config) -> list[tuple[int, int]]:
  """(fan_in, fan_out) of every Dense layer of the network."""
  width = config.model.width
  sizes = [(features.NUM_FEATURES, width)]
  sizes += [(width, width)] * (config.model.num_hidden_layers - 1)
  return sizes + [(width, 1)]


def flops_per_event(config) -> float:
  """Multiply-adds of one training step per event, times 2.

  Forward: one product per layer; backward: the kernel gradient of every
  layer and the input gradient of every layer but the first.
  """
  sizes = layer_sizes(config)
  macs = sum(a * b for a, b in sizes)
  return 2.0 * (3 * macs - sizes[0][0] * sizes[0][1])


def jax_rate(config, x: np.ndarray, y: np.ndarray, repeats: int) -> float:
  """Events per second of the compiled epoch (lax.scan over the batches)."""
  state = train.create_train_state(config, jax.random.key(0))
  x, y = jnp.asarray(x), jnp.asarray(y)
  key = jax.random.key(1)
  epoch = jax.jit(train.train_epoch, donate_argnums=0)
  holder = {'state': state}

  def run():
    holder['state'], metrics = epoch(holder['state'], x, y, key)
    metrics['loss'].block_until_ready()

  return x.shape[0] * x.shape[1] / timing.best_time(run, repeats)


def torch_model(config, params):
  """The PyTorch network with the weights of the JAX parameters."""
  import torch  # benchmark-only dependency

  layers = []
  for fan_in, fan_out in layer_sizes(config)[:-1]:
    layers += [torch.nn.Linear(fan_in, fan_out), torch.nn.Tanh()]
  layers.append(torch.nn.Linear(config.model.width, 1))
  model = torch.nn.Sequential(*layers)
  names = [f'hidden_{i}' for i in range(config.model.num_hidden_layers)]
  linears = [m for m in model if isinstance(m, torch.nn.Linear)]
  with torch.no_grad():
    for linear, name in zip(linears, [*names, 'output'], strict=True):
      linear.weight.copy_(
        torch.from_numpy(np.array(params[name]['kernel']).T.copy())
      )
      linear.bias.copy_(torch.from_numpy(np.array(params[name]['bias'])))
  return model


def torch_training(config, params, x: np.ndarray, y: np.ndarray):
  """An eager PyTorch epoch of the same recipe: run() -> losses [steps].

  torch.optim.SGD keeps v = mu v + (g + alpha W) and steps by -eta v, the
  same as the Optax chain at a fixed learning rate.
  """
  import torch  # benchmark-only dependency

  model = torch_model(config, params)
  kernels = [p for n, p in model.named_parameters() if n.endswith('weight')]
  biases = [p for n, p in model.named_parameters() if n.endswith('bias')]
  optimizer = torch.optim.SGD(
    [
      {'params': kernels, 'weight_decay': config.weight_decay},
      {'params': biases, 'weight_decay': 0.0},
    ],
    lr=config.learning_rate,
    momentum=config.momentum_start,
  )
  loss_fn = torch.nn.BCEWithLogitsLoss()
  xs, ys = torch.from_numpy(x), torch.from_numpy(y)

  def run():
    losses = []
    for step in range(xs.shape[0]):
      optimizer.zero_grad(set_to_none=True)
      loss = loss_fn(model(xs[step]).squeeze(-1), ys[step])
      loss.backward()
      optimizer.step()
      losses.append(loss.detach())
    return torch.stack(losses).numpy()

  return run


def check_same_training(config, x: np.ndarray, y: np.ndarray) -> float:
  """Largest difference of the per-step losses of both over 20 steps."""
  state = train.create_train_state(config, jax.random.key(0))
  run_torch = torch_training(config, state.params, x[:20], y[:20])
  _, metrics = train.train_epoch(state, x[:20], y[:20], jax.random.key(1))
  return float(np.max(np.abs(np.asarray(metrics['loss']) - run_torch())))


def torch_rate(
  config, x: np.ndarray, y: np.ndarray, repeats: int, threads: int
) -> float:
  """Events per second of the equivalent eager PyTorch loop."""
  import torch  # benchmark-only dependency

  torch.set_num_threads(threads)
  params = train.create_train_state(config, jax.random.key(0)).params
  run = torch_training(config, params, x, y)
  return x.shape[0] * x.shape[1] / timing.best_time(run, repeats)


def main(argv):
  del argv
  import torch  # benchmark-only dependency

  config = default.get_config()
  # PyTorch's busy-waiting worker threads can slow it down many times on a
  # loaded machine, so it runs with one thread or its default number,
  # whichever is faster.
  thread_counts = sorted({1, torch.get_num_threads()})
  print(
    f'JAX {jax.__version__} on {jax.devices()[0].device_kind}, PyTorch '
    f'{torch.__version__} with {thread_counts} threads'
  )
  rates = matmul_rates(_MATMUL_SIZE.value, _REPEATS.value)
  peak = max(rates.values())
  print(
    f'float32 matmul {_MATMUL_SIZE.value}^2: jnp {rates["jnp"] / 1e9:.1f} '
    f'GFLOP/s, numpy {rates["numpy"] / 1e9:.1f} GFLOP/s'
  )
  per_event = flops_per_event(config)
  print(f'training step: {per_event / 1e6:.2f} MFLOP per event (8 x 300 tanh)')

  rng = np.random.default_rng(_SEED.value)
  for batch_size in (int(b) for b in _BATCH_SIZES.value):
    steps = _NUM_EVENTS.value // batch_size
    x = rng.uniform(-1, 1, (steps, batch_size, features.NUM_FEATURES))
    x = x.astype(np.float32)
    y = (rng.random((steps, batch_size)) < 0.5).astype(np.float32)
    difference = check_same_training(config, x, y)
    if difference > 1e-3:
      raise RuntimeError(
        f'JAX and PyTorch losses differ by {difference} within 20 steps: '
        'the two loops do not train the same network'
      )
    jax_events = jax_rate(config, x, y, _REPEATS.value)
    # A short trial (20 steps, once) picks PyTorch's faster thread count.
    trial = {n: torch_rate(config, x[:20], y[:20], 1, n) for n in thread_counts}
    threads = max(trial, key=trial.get)
    torch_events = torch_rate(config, x, y, _REPEATS.value, threads)
    achieved = jax_events * per_event
    print(
      f'batch {batch_size:5d}: JAX {jax_events:9.0f} events/s, PyTorch '
      f'{torch_events:9.0f} events/s ({threads} threads), ratio '
      f'{jax_events / torch_events:.2f}; losses agree to {difference:.1e}; '
      f'JAX {achieved / 1e9:.1f} GFLOP/s = {achieved / peak:.2f} of the '
      'matmul rate'
    )


if __name__ == '__main__':
  app.run(main)
