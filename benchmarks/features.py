"""Speed of the jitted feature builder against a per-event Python loop.

Both implement the same definition (5 highest-momentum tracks per charge, 14
values each) on the same seeded events; the script checks they agree, then
prints events per second of each and their ratio. For scale it also times
one SGD step of the reference network (8 tanh layers of 300, batch 100) in
the same run: the feature builder should be far faster than training.

  python -m benchmarks.features --num_events=200000 --num_reference=2000
  python -m benchmarks.features --data_dir=DIR  # generated shards instead
"""

import math

from absl import app, flags
import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import timing
from flavortag_jax import features, physics, shards

_NUM_EVENTS = flags.DEFINE_integer(
  'num_events', 200_000, 'Events for the jitted builder.'
)
_NUM_REFERENCE = flags.DEFINE_integer(
  'num_reference', 2000, 'Events for the per-event Python loop.'
)
_REPEATS = flags.DEFINE_integer('repeats', 3, 'Timed repeats (best is kept).')
_SEED = flags.DEFINE_integer('seed', 0, 'Seed of the synthetic events.')
_DATA_DIR = flags.DEFINE_string(
  'data_dir',
  None,
  'A folder of event shards to use instead of synthetic '
  'events (its first num_events events).',
)


def synthetic_events(num_events: int, seed: int) -> shards.Events:
  """Events with Poisson(10) tracks of plausible momenta, PID and hits."""
  rng = np.random.default_rng(seed)
  counts = rng.poisson(10.0, num_events)
  n = int(counts.sum())
  tracks = {
    name: np.zeros((n, *shape), dtype)
    for name, (dtype, shape, _) in shards.TRACK_COLUMNS.items()
  }
  pid = rng.dirichlet(np.full(5, 0.3), n)
  for i, name in enumerate(
    ('electronID', 'muonID', 'pionID', 'kaonID', 'protonID')
  ):
    tracks[name] = pid[:, i].astype(np.float32)
  for name in ('px', 'py', 'pz'):
    tracks[name] = rng.normal(0.0, 0.7, n).astype(np.float32)
  tracks['pz'] += np.float32(0.4)
  tracks['charge'] = rng.choice(np.array([-1, 1], np.int8), n)
  tracks['nPXDHits'] = rng.integers(0, 3, n).astype(np.int8)
  tracks['nSVDHits'] = rng.integers(0, 9, n).astype(np.int8)
  tracks['nCDCHits'] = rng.integers(0, 57, n).astype(np.int8)
  tracks['dr'] = rng.exponential(0.03, n).astype(np.float32)
  tracks['dz'] = rng.normal(0.0, 0.05, n).astype(np.float32)
  tracks['pValue'] = rng.uniform(size=n).astype(np.float32)
  events = {
    name: np.zeros((num_events, *shape), dtype)
    for name, (dtype, shape, _) in shards.EVENT_COLUMNS.items()
  }
  events['n_tracks'] = counts.astype(np.int32)
  return shards.Events(
    events, tracks, shards.offsets_from_counts(counts), {'mode': 'nunu'}
  )


def reference_features(events: shards.Events) -> np.ndarray:
  """The feature definition written as a plain loop over events and tracks.

  Returns:
    Shape [events, 140] float64, padding 0.
  """
  beta_gamma = physics.PHYSICS.beta_gamma
  gamma = math.sqrt(1.0 + beta_gamma**2)
  columns = [events.tracks[c].tolist() for c in features.TRACK_INPUT_COLUMNS]
  rows = list(zip(*columns, strict=True))
  offsets = events.track_offsets.tolist()
  out = np.zeros((events.num_events, features.NUM_FEATURES))
  for event in range(events.num_events):
    groups = {1: [], -1: []}
    for row in rows[offsets[event] : offsets[event + 1]]:
      px, py, pz, charge = row[:4]
      p = math.sqrt(px * px + py * py + pz * pz)
      energy = math.sqrt(p * p + physics.PION_MASS**2)
      pz_star = gamma * pz - beta_gamma * energy
      p_star = math.sqrt(px * px + py * py + pz_star * pz_star)
      cos_theta = pz_star / p_star if p_star > 0 else 0.0
      values = [p_star, cos_theta, math.atan2(py, px), *row[4:]]
      groups[int(charge)].append((p, values))
    flat = []
    for sign in (1, -1):
      ranked = sorted(groups[sign], key=lambda t: -t[0])
      ranked = ranked[: features.TRACKS_PER_CHARGE]
      for _, values in ranked:
        flat.extend(values)
      missing = features.TRACKS_PER_CHARGE - len(ranked)
      flat.extend([0.0] * (missing * len(features.TRACK_FEATURES)))
    out[event] = flat
  return out


def train_step_rate(repeats: int) -> float:
  """Events per second of one SGD step of the reference network."""
  sizes = [features.NUM_FEATURES] + [300] * 8 + [1]
  keys = jax.random.split(jax.random.key(0), len(sizes) - 1)
  params = [
    (
      jax.random.normal(k, (a, b)) / math.sqrt(a),
      jnp.zeros(b),
    )
    for k, a, b in zip(keys, sizes[:-1], sizes[1:], strict=True)
  ]

  def loss(params, x, y):
    for w, b in params[:-1]:
      x = jnp.tanh(x @ w + b)
    logits = (x @ params[-1][0] + params[-1][1])[:, 0]
    return jnp.mean(jnp.logaddexp(0.0, logits) - y * logits)

  @jax.jit
  def step(params, x, y):
    grads = jax.grad(loss)(params, x, y)
    return jax.tree.map(lambda p, g: p - 0.05 * g, params, grads)

  x = jax.random.uniform(jax.random.key(1), (100, features.NUM_FEATURES))
  y = jnp.ones(100)
  num_steps = 200

  def run():
    p = params
    for _ in range(num_steps):
      p = step(p, x, y)
    jax.block_until_ready(p)

  return num_steps * 100 / timing.best_time(run, repeats)


def main(argv):
  del argv
  repeats = _REPEATS.value
  if _DATA_DIR.value:
    events = shards.read_data_dir(_DATA_DIR.value)
    events = events.take(np.arange(min(_NUM_EVENTS.value, events.num_events)))
  else:
    events = synthetic_events(_NUM_EVENTS.value, _SEED.value)
  print(
    f'{events.num_events} events, '
    f'{events.num_tracks / events.num_events:.1f} tracks per event'
  )
  sample = events.take(np.arange(min(_NUM_REFERENCE.value, events.num_events)))

  # Agreement on the reference sample.
  reference = reference_features(sample)
  values, _ = features.event_features(sample)
  np.testing.assert_allclose(values, reference, rtol=1e-5, atol=1e-6)
  print(
    f'agreement: {sample.num_events} events, max |difference| '
    f'{np.abs(values - reference).max():.2e}'
  )

  # The agreement check above was the reference loop's warm-up.
  python_time = timing.best_time(
    lambda: reference_features(sample), repeats, warm_up=False
  )
  python_rate = sample.num_events / python_time

  # Jitted builder on padded tracks already in memory.
  tracks, mask = features.pad_tracks(events)
  tracks, mask = jax.device_put((tracks, mask))
  build = lambda: jax.block_until_ready(
    features.build_features_jit(tracks, mask)
  )
  device_rate = events.num_events / timing.best_time(build, repeats)

  # End to end: ragged shard columns to numpy features, in chunks.
  total_rate = events.num_events / timing.best_time(
    lambda: features.event_features(events), repeats
  )
  train_rate = train_step_rate(repeats)

  print(f'device and backend: {jax.devices()[0]}')
  print(f'python loop, per event:       {python_rate:12,.0f} events/s')
  print(
    f'jitted build_features:        {device_rate:12,.0f} events/s '
    f'({device_rate / python_rate:,.0f} x python)'
  )
  print(
    f'event_features (pad + build): {total_rate:12,.0f} events/s '
    f'({total_rate / python_rate:,.0f} x python)'
  )
  print(
    f'train step, batch 100, 8x300: {train_rate:12,.0f} events/s '
    f'(jitted features {device_rate / train_rate:,.0f} x faster, end '
    f'to end {total_rate / train_rate:,.0f} x)'
  )


if __name__ == '__main__':
  app.run(main)
