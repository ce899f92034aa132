"""Tests of the quantile normalizer: uniformity, ties, padding, save/load."""

import h5py
import numpy as np
import pytest

from flavortag_jax import normalizer as normalizer_lib

QuantileNormalizer = normalizer_lib.QuantileNormalizer
NAMES = ('gauss', 'exponential', 'pid')


def sample(num_events=20000, seed=1):
  """Three columns: continuous, skewed, and PID-like with ties at 0 and 1.

  The PID column is exactly 0 in 30 % and exactly 1 in 20 % of the events,
  uniform in (0, 1) otherwise.
  """
  rng = np.random.default_rng(seed)
  pid = rng.uniform(0.0, 1.0, num_events)
  pid[: int(0.3 * num_events)] = 0.0
  pid[int(0.3 * num_events) : int(0.5 * num_events)] = 1.0
  values = np.stack(
    [
      rng.normal(0.0, 2.0, num_events),
      rng.exponential(1.5, num_events),
      rng.permutation(pid),
    ],
    axis=1,
  ).astype(np.float32)
  return values, np.ones_like(values, bool)


def test_training_data_maps_close_to_uniform():
  values, present = sample()
  num_bins = 64
  norm = QuantileNormalizer.fit(values, present, NAMES, num_bins)
  out = np.asarray(norm(values, present))
  assert out.min() >= -1.0 and out.max() <= 1.0
  for column in range(2):
    # Empirical CDF of the output against the uniform CDF (y + 1) / 2: the
    # edges are the data's own quantiles, so they agree within a bin.
    y = np.sort(out[:, column])
    ecdf = np.arange(1, len(y) + 1) / len(y)
    assert np.abs(ecdf - (y + 1) / 2).max() < 1.0 / num_bins
    assert abs(y.mean()) < 1.0 / num_bins


def test_ties_map_to_the_middle_of_their_quantile_range():
  values, present = sample()
  num_bins = 64
  norm = QuantileNormalizer.fit(values, present, NAMES, num_bins)
  out = np.asarray(norm(values, present))[:, 2]
  zeros, ones = values[:, 2] == 0.0, values[:, 2] == 1.0
  assert np.unique(out[zeros]).size == 1 and np.unique(out[ones]).size == 1
  # PID = 0 fills the CDF range [0, 0.3]: middle 0.15 -> -1 + 2 * 0.15 = -0.7.
  # PID = 1 fills [0.8, 1.0]: middle 0.9 -> -1 + 2 * 0.9 = 0.8.
  # Edges resolve the CDF to one bin, 1 / 64.
  assert out[zeros][0] == pytest.approx(-0.7, abs=1.0 / num_bins)
  assert out[ones][0] == pytest.approx(0.8, abs=1.0 / num_bins)


def test_discrete_column_hand_computed():
  # Hit counts 0, 1, 2 in 200, 500, 300 of 1000 events; 5 bins.
  # Edges at quantiles 0, 0.2, 0.4, 0.6, 0.8, 1 (inverted CDF, CDF of
  # 0, 1, 2 is 0.2, 0.7, 1.0): 0, 0, 1, 1, 2, 2.
  # 0 equals edges 0..1 -> position 0.5 -> -1 + 2 * 0.5 / 5 = -0.8
  # 1 equals edges 2..3 -> position 2.5 -> 0.0
  # 2 equals edges 4..5 -> position 4.5 -> 0.8
  # 1.5 lies between edges 3 (1) and 4 (2) -> position 3.5 -> 0.4
  # -1 and 3 lie outside -> -1 and +1.
  hits = np.repeat([0.0, 1.0, 2.0], [200, 500, 300])[:, None]
  norm = QuantileNormalizer.fit(hits, hits == hits, ('nCDCHits',), 5)
  np.testing.assert_array_equal(norm.edges[0], [0, 0, 1, 1, 2, 2])
  probe = np.array([[0.0], [1.0], [2.0], [1.5], [-1.0], [3.0]])
  out = np.asarray(norm(probe, probe == probe))[:, 0]
  np.testing.assert_allclose(out, [-0.8, 0.0, 0.8, 0.4, -1.0, 1.0], atol=1e-6)


def test_monotonic_including_ties_and_outside_range():
  values, present = sample(5000)
  norm = QuantileNormalizer.fit(values, present, NAMES, 32)
  # Per column a sorted probe of every edge, the training values and points
  # beyond the data.
  probe = np.stack(
    [
      np.sort(
        np.concatenate(
          [
            norm.edges[column],
            values[:, column],
            np.linspace(-20.0, 20.0, 4001, dtype=np.float32),
          ]
        )
      )
      for column in range(3)
    ],
    axis=1,
  )
  out = np.asarray(norm(probe, np.ones_like(probe, bool)))
  assert np.all(np.diff(out, axis=0) >= 0.0)
  np.testing.assert_array_equal(out[0], -1.0)
  np.testing.assert_array_equal(out[-1], 1.0)


def test_padding_is_zero_and_never_fitted():
  values, present = sample(4000)
  rng = np.random.default_rng(7)
  absent = rng.uniform(size=values.shape) < 0.3
  garbage = values.copy()
  garbage[absent] = np.where(rng.uniform(size=absent.sum()) < 0.5, np.nan, 1e9)
  norm = QuantileNormalizer.fit(garbage, ~absent, NAMES, 16)
  for column in range(3):
    reference = QuantileNormalizer.fit(
      values[~absent[:, column], column][:, None],
      np.ones(((~absent[:, column]).sum(), 1), bool),
      ('x',),
      16,
    )
    np.testing.assert_array_equal(norm.edges[column], reference.edges[0])
  out = np.asarray(norm(garbage, ~absent))
  assert np.all(out[absent] == 0.0)
  assert np.all(np.isfinite(out))


def test_save_load_round_trip(tmp_path):
  values, present = sample(3000)
  norm = QuantileNormalizer.fit(values, present, NAMES, 128)
  path = norm.save(tmp_path / 'normalizer.npz')
  assert sorted(p.name for p in tmp_path.iterdir()) == ['normalizer.npz']
  loaded = QuantileNormalizer.load(path, feature_names=NAMES)
  assert loaded.feature_names == NAMES and loaded.num_bins == 128
  np.testing.assert_array_equal(
    np.asarray(loaded(values, present)), np.asarray(norm(values, present))
  )
  with np.load(path) as f:
    assert int(f['format_version']) == normalizer_lib.FORMAT_VERSION
    assert tuple(f['feature_names']) == NAMES


def test_load_errors(tmp_path):
  values, present = sample(1000)
  path = QuantileNormalizer.fit(values, present, NAMES, 8).save(
    tmp_path / 'n.npz'
  )
  with pytest.raises(normalizer_lib.NormalizerError, match='first differences'):
    QuantileNormalizer.load(path, feature_names=('gauss', 'exp', 'pid'))
  with pytest.raises(normalizer_lib.NormalizerError, match='3 features.*2'):
    QuantileNormalizer.load(path, feature_names=NAMES[:2])
  with pytest.raises(normalizer_lib.NormalizerError, match='no such'):
    QuantileNormalizer.load(tmp_path / 'missing.npz')

  # Another format version.
  with np.load(path) as f:
    content = {k: f[k] for k in f.files}
  content['format_version'] = np.int64(99)
  np.savez(tmp_path / 'v99.npz', **content)
  with pytest.raises(normalizer_lib.NormalizerError, match='version 99'):
    QuantileNormalizer.load(tmp_path / 'v99.npz')

  # Not a normalizer at all.
  with h5py.File(tmp_path / 'other.npz', 'w') as f:
    f['x'] = 1
  with pytest.raises(normalizer_lib.NormalizerError, match='not a readable'):
    QuantileNormalizer.load(tmp_path / 'other.npz')


def test_fit_errors():
  values, present = sample(100)
  bad = values.copy()
  bad[5, 1] = np.inf
  with pytest.raises(ValueError, match="'exponential' of event 5"):
    QuantileNormalizer.fit(bad, present, NAMES)
  with pytest.raises(ValueError, match='no present feature value'):
    QuantileNormalizer.fit(values, np.zeros_like(present), NAMES)
  partly = present.copy()
  partly[:, 2] = False
  with pytest.raises(ValueError, match=r"1 columns.*\['pid'\]"):
    QuantileNormalizer.fit(values, partly, NAMES)
  with pytest.raises(ValueError, match='2 feature names'):
    QuantileNormalizer.fit(values, present, NAMES[:2])
