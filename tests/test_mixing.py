"""Tests of the coherent B pair: decay times and flavors against hand values."""

import math

import numpy as np
import pytest

from flavortag_jax import mixing, physics


@pytest.mark.parametrize(
  'dt, expected',
  [
    # dt = 0: the pair is always of opposite flavors.
    (0.0, 1.0),
    # dm dt = 0.5069 * 2 = 1.0138 rad; cos = 0.52864; (1 + 0.52864) / 2.
    (2.0, 0.76432),
    # dm dt = -1.5207 rad; cos = 0.05008; (1 + 0.05008) / 2. Even in dt.
    (-3.0, 0.52504),
    # dm dt = pi: half an oscillation, always the same flavor.
    (math.pi / 0.5069, 0.0),
  ],
)
def test_opposite_flavor_probability_hand_values(dt, expected):
  got = mixing.opposite_flavor_probability(dt, dm=0.5069)
  assert got == pytest.approx(expected, abs=5e-5)


@pytest.mark.parametrize(
  'dt, expected',
  [
    (0.0, 0.5),
    # sin(1.0138) = 0.84885; (1 + 0.70 * 0.84885) / 2 = 0.79710.
    (2.0, 0.79710),
    # sin(-1.5207) = -0.99875; (1 - 0.70 * 0.99875) / 2 = 0.15044.
    (-3.0, 0.15044),
  ],
)
def test_cp_tag_probability_hand_values(dt, expected):
  got = mixing.cp_tag_b0_probability(dt, s=0.70, c=0.0, dm=0.5069)
  assert got == pytest.approx(expected, abs=5e-5)


def test_cp_tag_probability_with_direct_cp_violation():
  # dt = 0: only the C term acts, (1 - C) / 2 = (1 - 0.2) / 2 = 0.4.
  assert mixing.cp_tag_b0_probability(0.0, s=0.7, c=0.2) == pytest.approx(0.4)


def test_decay_times_are_exponential_with_the_b0_lifetime():
  rng = np.random.default_rng(0)
  t_sig, t_tag = mixing.draw_decay_times(rng, 200_000, tau=1.517)
  # Mean of Exp(tau) is tau = 1.517 ps, error 1.517 / sqrt(2e5) = 0.0034.
  assert t_sig.mean() == pytest.approx(1.517, abs=0.017)
  assert t_tag.mean() == pytest.approx(1.517, abs=0.017)
  # dt = t_sig - t_tag is Laplace(0, tau): E|dt| = tau.
  assert np.abs(t_sig - t_tag).mean() == pytest.approx(1.517, abs=0.017)
  assert np.all(t_sig >= 0) and np.all(t_tag >= 0)


def test_flavor_specific_mixed_fraction_is_chi_d():
  rng = np.random.default_rng(1)
  pairs = mixing.draw_pair_decays(rng, 200_000, 'flavor_specific')
  assert set(np.unique(pairs.q_sig)) == {-1, 1}
  # x = dm tau = 0.5069 * 1.517 = 0.76897, x^2 = 0.59131;
  # chi_d = x^2 / (2 (1 + x^2)) = 0.59131 / 3.18262 = 0.18579.
  # Binomial error sqrt(0.186 * 0.814 / 2e5) = 0.00087; allow 5 sigma.
  same_flavor = np.mean(pairs.q_sig == pairs.q_tag)
  assert same_flavor == pytest.approx(0.18579, abs=0.0044)
  assert np.mean(pairs.q_sig) == pytest.approx(0.0, abs=0.011)


def test_flavor_specific_mixing_follows_cos_dm_dt():
  rng = np.random.default_rng(2)
  pairs = mixing.draw_pair_decays(rng, 400_000, 'flavor_specific')
  dt = pairs.dt
  opposite = pairs.q_sig != pairs.q_tag
  # Near dt = 0 almost every pair is of opposite flavor: the mean of
  # (1 + cos(dm dt)) / 2 over |dt| < 0.2 ps is above 0.998.
  assert np.mean(opposite[np.abs(dt) < 0.2]) > 0.99
  # Near |dm dt| = pi (|dt| = 6.198 ps) the flavors are almost always equal.
  window = np.abs(np.abs(dt) - math.pi / 0.5069) < 0.3
  assert np.mean(opposite[window]) < 0.03


def test_cp_asymmetry_amplitude_is_sin2beta():
  rng = np.random.default_rng(3)
  pairs = mixing.draw_pair_decays(rng, 400_000, 'cp')
  assert np.all(pairs.q_sig == 0)
  # E[q_tag sin(dm dt)] = S E[sin^2(dm dt)] with dt ~ Laplace(0, tau):
  # E[cos(2 dm dt)] = 1 / (1 + (2x)^2) = 1 / (1 + 4 * 0.59131) = 0.29715,
  # E[sin^2] = (1 - 0.29715) / 2 = 0.35142, times S = 0.70 gives 0.24600.
  # Per-event spread below 1, so the error is < 1 / sqrt(4e5) = 0.0016.
  moment = np.mean(pairs.q_tag * np.sin(0.5069 * pairs.dt))
  assert moment == pytest.approx(0.24600, abs=0.008)
  # C = 0: no cos(dm dt) term; and the tag flavors balance overall.
  assert np.mean(pairs.q_tag * np.cos(0.5069 * pairs.dt)) == pytest.approx(
    0.0, abs=0.008
  )


def test_invisible_signal_tag_flavor_is_unbiased_at_every_dt():
  rng = np.random.default_rng(4)
  pairs = mixing.draw_pair_decays(rng, 200_000, 'invisible')
  assert np.all(pairs.q_sig == 0)
  moment = np.mean(pairs.q_tag * np.sin(0.5069 * pairs.dt))
  assert moment == pytest.approx(0.0, abs=0.008)
  assert np.mean(pairs.q_tag) == pytest.approx(0.0, abs=0.011)


def test_same_seed_same_pairs():
  a = mixing.draw_pair_decays(np.random.default_rng(5), 100, 'cp')
  b = mixing.draw_pair_decays(np.random.default_rng(5), 100, 'cp')
  np.testing.assert_array_equal(a.t_tag, b.t_tag)
  np.testing.assert_array_equal(a.q_tag, b.q_tag)


def test_chi_d_constant_matches_the_hand_value():
  assert physics.PHYSICS.chi_d == pytest.approx(0.18579, abs=1e-5)


def test_unknown_signal_kind_is_rejected():
  with pytest.raises(ValueError, match='unknown signal kind'):
    mixing.draw_pair_decays(np.random.default_rng(0), 10, 'semileptonic')
  with pytest.raises(ValueError, match='num_events'):
    mixing.draw_pair_decays(np.random.default_rng(0), -1, 'cp')
