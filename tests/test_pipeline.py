"""Tests of the input pipeline: splits, load_splits, batches, streaming."""

import os
import pathlib
import subprocess
import sys
import textwrap

import h5py
import jax
import numpy as np
import pytest

from flavortag_jax import features, normalizer, pipeline, shards


def random_events(num_events, seed, mean_tracks=6.0):
  """Seeded events with random tracks; about 1 in 400 events is empty."""
  rng = np.random.default_rng(seed)
  counts = rng.poisson(mean_tracks, num_events)
  n = int(counts.sum())
  pid = rng.dirichlet(np.ones(5), n)
  pid[rng.uniform(size=(n, 5)) < 0.2] = 0.0
  tracks = {
    name: np.zeros((n, *shape), dtype)
    for name, (dtype, shape, _) in shards.TRACK_COLUMNS.items()
  }
  momentum = rng.normal(0.0, 0.8, (n, 3))
  tracks.update(
    px=momentum[:, 0],
    py=momentum[:, 1],
    pz=momentum[:, 2] + 0.3,
    charge=rng.choice([-1, 1], n),
    dr=rng.exponential(0.02, n),
    dz=rng.normal(0.0, 0.05, n),
    electronID=pid[:, 0],
    muonID=pid[:, 1],
    pionID=pid[:, 2],
    kaonID=pid[:, 3],
    protonID=pid[:, 4],
    nPXDHits=rng.integers(0, 3, n),
    nSVDHits=rng.integers(0, 9, n),
    nCDCHits=rng.integers(0, 57, n),
    pValue=np.where(rng.uniform(size=n) < 0.1, 0.0, rng.uniform(size=n)),
  )
  tracks = {
    k: np.asarray(v, shards.TRACK_COLUMNS[k][0]) for k, v in tracks.items()
  }
  events = {
    name: np.zeros((num_events, *shape), dtype)
    for name, (dtype, shape, _) in shards.EVENT_COLUMNS.items()
  }
  events.update(
    n_tracks=counts.astype(np.int32),
    q_tag=rng.choice([-1, 1], num_events).astype(np.int8),
    dt=rng.normal(0.0, 2.0, num_events).astype(np.float32),
    tag_flags=rng.integers(0, 512, num_events).astype(np.uint32),
  )
  return shards.Events(
    events, tracks, shards.offsets_from_counts(counts), {'mode': 'nunu'}
  )


@pytest.fixture(scope='module')
def data_dir(tmp_path_factory):
  """Three shards of 400, 350 and 450 events."""
  folder = tmp_path_factory.mktemp('shards')
  for i, num_events in enumerate((400, 350, 450)):
    shards.write_shard(
      folder / f'events_{i:03d}.h5', random_events(num_events, seed=10 + i)
    )
  return folder


@pytest.fixture(scope='module')
def splits(data_dir):
  return pipeline.load_splits(data_dir, num_bins=64)


def test_split_indices_sizes_and_seed():
  # 1000 events: cuts at round(0.92 * 1000) = 920 and round(0.96 * 1000)
  # = 960, so 920 / 40 / 40.
  s = pipeline.split_indices(1000)
  assert [len(s[k]) for k in ('train', 'valid', 'test')] == [920, 40, 40]
  joined = np.concatenate(list(s.values()))
  np.testing.assert_array_equal(np.sort(joined), np.arange(1000))
  assert all(np.all(np.diff(v) > 0) for v in s.values())
  again = pipeline.split_indices(1000, seed=0)
  other = pipeline.split_indices(1000, seed=1)
  np.testing.assert_array_equal(s['test'], again['test'])
  assert not np.array_equal(s['test'], other['test'])


def test_split_errors():
  # 10 events: cuts at round(9.2) = 9 and round(9.6) = 10: the test split
  # gets 10 - 10 = 0 events.
  with pytest.raises(ValueError, match='test split is empty: 10 events'):
    pipeline.split_indices(10)
  with pytest.raises(ValueError, match='summing to 1'):
    pipeline.split_indices(100, fractions=(0.9, 0.2, 0.1))


def test_load_splits_end_to_end(data_dir, splits):
  events = shards.read_data_dir(data_dir)
  assert sum(d.num_events for d in splits[:3]) == 1200
  np.testing.assert_array_equal(
    splits.test.event_index, pipeline.split_indices(1200)['test']
  )

  # Truth travels with each event.
  test = splits.test
  np.testing.assert_array_equal(
    test.q_tag, events.events['q_tag'][test.event_index]
  )
  np.testing.assert_array_equal(np.asarray(test.labels), test.q_tag == 1)
  np.testing.assert_array_equal(test.dt, events.events['dt'][test.event_index])
  np.testing.assert_array_equal(
    test.flag('has_d_star'), events.flag('has_d_star')[test.event_index]
  )

  # Features: normalized raw features of the same events, padding at 0.
  values, present = features.event_features(events.take(test.event_index))
  np.testing.assert_array_equal(
    np.asarray(test.features), np.asarray(splits.normalizer(values, present))
  )
  x = np.asarray(splits.train.features)
  assert x.shape == (len(splits.train.event_index), 140)
  assert x.dtype == np.float32 and np.abs(x).max() <= 1.0

  # The normalizer is fitted on the training split only.
  train_values, train_present = features.event_features(
    events.take(splits.train.event_index)
  )
  refit = normalizer.QuantileNormalizer.fit(
    train_values, train_present, features.FEATURE_NAMES, 64
  )
  np.testing.assert_array_equal(refit.edges, splits.normalizer.edges)


def test_prepare_events_matches_and_checks_features(data_dir, splits):
  events = shards.read_data_dir(data_dir)
  valid = splits.valid
  prepared = pipeline.prepare_events(events.take(valid.event_index), splits[3])
  np.testing.assert_array_equal(
    np.asarray(prepared.features), np.asarray(valid.features)
  )
  np.testing.assert_array_equal(prepared.event_index, np.arange(len(valid.dt)))

  names = list(features.FEATURE_NAMES)
  names[3], names[4] = names[4], names[3]
  swapped = normalizer.QuantileNormalizer(tuple(names), splits[3].edges)
  with pytest.raises(normalizer.NormalizerError, match='pos1_pionID'):
    pipeline.prepare_events(events.take(valid.event_index[:5]), swapped)


def test_bad_data_folders(tmp_path):
  # Shards of different schema versions.
  mixed = tmp_path / 'mixed'
  mixed.mkdir()
  shards.write_shard(mixed / 'a.h5', random_events(20, seed=1))
  shards.write_shard(mixed / 'b.h5', random_events(20, seed=2))
  with h5py.File(mixed / 'b.h5', 'a') as f:
    f.attrs['schema_version'] = 2
  with pytest.raises(shards.ShardError, match='schema version 2'):
    pipeline.load_splits(mixed)

  # Every event without tracks.
  empty = tmp_path / 'empty'
  empty.mkdir()
  shards.write_shard(empty / 'a.h5', random_events(50, seed=3, mean_tracks=0))
  with pytest.raises(ValueError, match='none of its 50 events has a track'):
    pipeline.load_splits(empty)

  # Too few events for a validation split.
  small = tmp_path / 'small'
  small.mkdir()
  shards.write_shard(small / 'a.h5', random_events(10, seed=4))
  with pytest.raises(ValueError, match='split is empty'):
    pipeline.load_splits(small)

  # NaN in a track column.
  nan = tmp_path / 'nan'
  nan.mkdir()
  events = random_events(60, seed=5)
  events.tracks['pValue'][7] = np.nan
  shards.write_shard(nan / 'a.h5', events)
  with pytest.raises(ValueError, match="NaN or infinite.*'pValue'"):
    pipeline.load_splits(nan)


def test_epoch_batches(splits):
  train = splits.train
  key = jax.random.key(3)
  x, y = pipeline.epoch_batches(train.features, train.labels, key, 100)
  steps = train.num_events // 100
  assert x.shape == (steps, 100, 140) and y.shape == (steps, 100)

  # The batches are rows of the split, each at most once, labels aligned.
  order = np.asarray(pipeline.epoch_permutation(train.num_events, key, 100))
  assert len(np.unique(order)) == steps * 100
  np.testing.assert_array_equal(
    np.asarray(x), np.asarray(train.features)[order]
  )
  np.testing.assert_array_equal(np.asarray(y), np.asarray(train.labels)[order])

  again, _ = pipeline.epoch_batches(train.features, train.labels, key, 100)
  other, _ = pipeline.epoch_batches(
    train.features, train.labels, jax.random.key(4), 100
  )
  np.testing.assert_array_equal(np.asarray(again), np.asarray(x))
  assert not np.array_equal(np.asarray(other), np.asarray(x))
  with pytest.raises(ValueError, match='batch_size is 5000'):
    pipeline.epoch_batches(train.features, train.labels, key, 5000)


def test_streaming_gives_the_same_batches(data_dir, splits, tmp_path):
  store = pipeline.build_feature_store(
    data_dir, tmp_path / 'store', num_bins=64
  )
  assert not list((tmp_path / 'store').glob('raw_*'))
  np.testing.assert_array_equal(store.normalizer.edges, splits.normalizer.edges)
  for name in ('train', 'valid'):
    np.testing.assert_array_equal(
      store.splits[name], getattr(splits, name).event_index
    )

  key = jax.random.key(11)
  train = splits.train
  x, y = pipeline.epoch_batches(train.features, train.labels, key, 32)
  blocks = list(store.epoch_blocks('train', key, 32, steps_per_block=7))
  assert len(blocks) == -(-x.shape[0] // 7)
  np.testing.assert_array_equal(
    np.concatenate([np.asarray(b[0]) for b in blocks]), np.asarray(x)
  )
  np.testing.assert_array_equal(
    np.concatenate([np.asarray(b[1]) for b in blocks]), np.asarray(y)
  )

  reopened = pipeline.open_feature_store(tmp_path / 'store')
  valid = reopened.dataset('valid')
  np.testing.assert_array_equal(
    np.asarray(valid.features), np.asarray(splits.valid.features)
  )
  np.testing.assert_array_equal(valid.q_tag, splits.valid.q_tag)
  with pytest.raises(ValueError, match='not a complete feature store'):
    pipeline.open_feature_store(tmp_path)


def test_batches_sharded_over_a_data_mesh():
  # Two CPU devices need a fresh process: the flag must precede JAX start.
  script = textwrap.dedent(
    """
    import jax
    import numpy as np
    from flavortag_jax import pipeline

    mesh = jax.make_mesh((2,), ('data',))
    sharding = pipeline.batch_sharding(mesh)
    features = jax.random.uniform(jax.random.key(0), (90, 140))
    labels = jax.numpy.arange(90.0)
    key = jax.random.key(1)
    x, y = pipeline.epoch_batches(features, labels, key, 8, sharding)
    plain_x, _ = pipeline.epoch_batches(features, labels, key, 8)
    assert x.shape == (11, 8, 140), x.shape
    assert x.sharding.spec == jax.sharding.PartitionSpec(None, 'data')
    assert {s.data.shape for s in x.addressable_shards} == {(11, 4, 140)}
    np.testing.assert_array_equal(np.asarray(x), np.asarray(plain_x))
    print('sharded ok')
    """
  )
  env = dict(
    os.environ,
    XLA_FLAGS='--xla_force_host_platform_device_count=2',
    JAX_PLATFORMS='cpu',
  )
  result = subprocess.run(
    [sys.executable, '-c', script],
    env=env,
    cwd=pathlib.Path(__file__).resolve().parents[1],
    capture_output=True,
    text=True,
    timeout=120,
  )
  assert result.returncode == 0, result.stderr
  assert 'sharded ok' in result.stdout


def test_load_splits_on_generated_events(generated_dir, generated_events):
  splits = pipeline.load_splits(generated_dir)
  # 4000 events: cuts at round(0.92 * 4000) = 3680 and round(0.96 * 4000)
  # = 3840: 3680 / 160 / 160.
  assert [d.num_events for d in splits[:3]] == [3680, 160, 160]
  joined = np.concatenate([d.event_index for d in splits[:3]])
  np.testing.assert_array_equal(np.sort(joined), np.arange(4000))

  train = splits.train
  values, present = features.event_features(
    generated_events.take(train.event_index)
  )
  x = np.asarray(train.features)
  assert np.all(x[~present] == 0.0) and np.abs(x).max() <= 1.0
  # Ties map to the middle of their quantile range, so every column of the
  # training data averages close to 0 over its present entries.
  counts = present.sum(axis=0)
  means = (x * present).sum(axis=0) / counts
  assert np.all(np.abs(means) < 0.01), means[np.abs(means) >= 0.01]
  np.testing.assert_array_equal(
    np.asarray(train.labels),
    generated_events.events['q_tag'][train.event_index] == 1,
  )
