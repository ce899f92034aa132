"""Tests of the figures of merit against numbers worked out by hand."""

import math

import numpy as np
import pytest
from sklearn import metrics as sk_metrics

from flavortag_jax import metrics

# A hand-made table of ten events in the Belle r bins
# (0, 0.1, 0.25, 0.5, 0.625, 0.75, 0.875, 1.0):
#   event  qr     q_true  r     bin  q_pred  tag
#   1      +0.05  +1      0.05  0    +1      right
#   2      -0.05  +1      0.05  0    -1      wrong
#   3       0.0   -1      0.0   0    +1      wrong (qr == 0 tags B0)
#   4      +0.3   +1      0.3   2    +1      right
#   5      -0.4   -1      0.4   2    -1      right
#   6      +0.45  -1      0.45  2    +1      wrong
#   7      -0.3   +1      0.3   2    -1      wrong
#   8      +0.9   +1      0.9   6    +1      right
#   9      -1.0   -1      1.0   6    -1      right (r = 1 is in the last bin)
#   10     +0.5   -1      0.5   3    +1      wrong (r = 0.5 opens bin 3)
TABLE_QR = np.array([0.05, -0.05, 0.0, 0.3, -0.4, 0.45, -0.3, 0.9, -1.0, 0.5])
TABLE_Q = np.array([1, 1, -1, 1, -1, -1, 1, 1, -1, -1])


def test_binned_q_of_hand_table():
  result = metrics.binned_q(TABLE_QR, TABLE_Q)
  bins = result.bins
  assert result.n_events == 10
  assert [b.n_events for b in bins] == [3, 0, 4, 1, 0, 0, 2]

  # Bin 0: events 1-3, two wrong. eps = 3/10, w = 2/3,
  # w_err = sqrt(2/3 * 1/3 / 3) = sqrt(2/27) = 0.272166,
  # w(B0) = 1/2 (events 1, 2), w(anti-B0) = 1 (event 3), dw = -1/2,
  # q = 0.3 * (1 - 4/3)^2 = 0.3 / 9 = 1/30.
  assert bins[0].eff == pytest.approx(0.3)
  assert bins[0].w == pytest.approx(2 / 3)
  assert bins[0].w_err == pytest.approx(0.272166, abs=1e-6)
  assert bins[0].dw == pytest.approx(-0.5)
  assert bins[0].q == pytest.approx(1 / 30)

  # Bin 1 is empty: no fraction, no w, no contribution.
  assert bins[1].eff == 0.0 and bins[1].q == 0.0
  assert math.isnan(bins[1].w) and math.isnan(bins[1].dw)

  # Bin 2: events 4-7, two wrong. eps = 0.4, w = 1/2,
  # w_err = sqrt(0.25 / 4) = 0.25, w(B0) = 1/2 (4 right, 7 wrong),
  # w(anti-B0) = 1/2 (5 right, 6 wrong), dw = 0, q = 0.4 * 0^2 = 0.
  assert bins[2].eff == pytest.approx(0.4)
  assert bins[2].w == pytest.approx(0.5)
  assert bins[2].w_err == pytest.approx(0.25)
  assert bins[2].dw == pytest.approx(0.0)
  assert bins[2].q == pytest.approx(0.0)

  # Bin 3: event 10 only, wrong. eps = 0.1, w = 1, w_err = 0, no B0 so
  # dw is undefined, q = 0.1 * (1 - 2)^2 = 0.1.
  assert bins[3].eff == pytest.approx(0.1)
  assert bins[3].w == pytest.approx(1.0)
  assert bins[3].w_err == pytest.approx(0.0)
  assert math.isnan(bins[3].dw)
  assert bins[3].q == pytest.approx(0.1)

  # Bin 6: events 8 and 9, both right. eps = 0.2, w = 0, dw = 0 - 0,
  # q = 0.2.
  assert bins[6].eff == pytest.approx(0.2)
  assert bins[6].w == pytest.approx(0.0)
  assert bins[6].dw == pytest.approx(0.0)
  assert bins[6].q == pytest.approx(0.2)

  # Q = 1/30 + 0 + 0.1 + 0.2 = 1/3.
  assert result.q == pytest.approx(1 / 3)

  # sigma_Q^2 = [sum_i eps d^2 (1 + 12 w (1 - w)) - Q^2] / N with
  # bin 0: 0.3 * 1/9 * (1 + 12 * 2/9) = 0.3/9 * 11/3 = 11/90,
  # bin 2: d = 0 -> 0, bin 3: 0.1 * 1 * 1 = 9/90, bin 6: 0.2 = 18/90;
  # sum 38/90, minus Q^2 = 10/90 gives 28/90; / 10 -> 28/900,
  # sigma_Q = sqrt(0.0311111) = 0.176383.
  assert result.q_err == pytest.approx(0.176383, abs=1e-6)


def test_accuracy_and_unbinned_q_of_hand_table():
  # Right tags: events 1, 4, 5, 8, 9 -> 5 / 10.
  assert metrics.accuracy(TABLE_QR, TABLE_Q) == pytest.approx(0.5)
  # mean(qr^2): 0.0025 + 0.0025 + 0 = 0.005; + 0.09 + 0.16 + 0.2025 + 0.09
  # = 0.5475; + 0.81 + 1 + 0.25 = 2.6075; / 10 = 0.26075.
  assert metrics.unbinned_q(TABLE_QR) == pytest.approx(0.26075)


def test_summary_holds_the_metrics_json_fields():
  s = metrics.summary(TABLE_QR, TABLE_Q)
  assert set(s) == {
    'auc',
    'q',
    'q_err',
    'q_unbinned',
    'accuracy',
    'n_events',
    'bins',
  }
  assert s['q'] == pytest.approx(1 / 3)
  assert s['n_events'] == 10
  assert len(s['bins']) == 7
  assert set(s['bins'][0]) == {'r_lo', 'r_hi', 'eff', 'w', 'w_err', 'dw', 'q'}
  # Undefined values become JSON null.
  assert s['bins'][1]['w'] is None and s['bins'][3]['dw'] is None
  assert s['bins'][0]['dw'] == pytest.approx(-0.5)


def test_custom_bins():
  # Two bins [0, 0.5) and [0.5, 1]: bin 0 holds events 1-7 (4 wrong:
  # 2, 3, 6, 7), w = 4/7, eps = 0.7, q = 0.7 * (1 - 8/7)^2 = 0.7 / 49
  # = 0.0142857; bin 1 holds 8, 9, 10 (10 wrong), w = 1/3, eps = 0.3,
  # q = 0.3 * (1/3)^2 = 1/30. Q = 0.0142857 + 0.0333333 = 0.047619.
  result = metrics.binned_q(TABLE_QR, TABLE_Q, bins=(0.0, 0.5, 1.0))
  assert result.bins[0].w == pytest.approx(4 / 7)
  assert result.bins[1].w == pytest.approx(1 / 3)
  assert result.q == pytest.approx(0.047619, abs=1e-6)


def test_q_of_calibrated_output_with_known_w():
  # Every event has r = 1 - 2 w with w = 0.2, so Q = (1 - 2 * 0.2)^2 = 0.36
  # exactly for the unbinned figure, and within errors for the binned one.
  rng = np.random.default_rng(1)
  n, w = 100_000, 0.2
  q_true = rng.choice([-1, 1], n)
  wrong = rng.random(n) < w
  qr = np.where(wrong, -q_true, q_true) * (1 - 2 * w)
  assert metrics.unbinned_q(qr) == pytest.approx(0.36)
  result = metrics.binned_q(qr, q_true)
  assert abs(result.q - 0.36) < 4 * result.q_err
  # All events in the bin [0.5, 0.625): eps = 1.
  assert result.bins[3].eff == 1.0
  assert abs(result.bins[3].w - w) < 4 * result.bins[3].w_err


def test_fine_bins_of_calibrated_output_reach_mean_r_squared():
  # r uniform on [0, 1], wrong with probability (1 - r) / 2: with fine bins
  # Q -> E[r^2] = 1/3 (the loss to binning, the variance of r inside a bin
  # of width 0.01, is 0.01^2 / 12 ~ 1e-5).
  rng = np.random.default_rng(2)
  n = 200_000
  r = rng.random(n)
  q_true = rng.choice([-1, 1], n)
  wrong = rng.random(n) < (1 - r) / 2
  qr = np.where(wrong, -q_true, q_true) * r
  result = metrics.binned_q(qr, q_true, bins=np.linspace(0, 1, 101))
  assert abs(result.q - 1 / 3) < 4 * result.q_err


def test_q_error_matches_spread_of_toy_samples():
  # Seeded toys of 1000 calibrated events with r uniform: the standard
  # deviation of Q over 2000 samples must agree with the propagated error.
  # The spread itself is known to 1 / sqrt(2 * 2000) = 1.6 %, so 5 % is a
  # 3 sigma band; leaving out the covariance of the bin fractions (the
  # -Q^2 term) would raise the error by about 7 % here and fail.
  rng = np.random.default_rng(3)
  n, toys = 1000, 2000
  qs, errors = [], []
  for _ in range(toys):
    r = rng.random(n)
    q_true = rng.choice([-1, 1], n)
    wrong = rng.random(n) < (1 - r) / 2
    result = metrics.binned_q(np.where(wrong, -q_true, q_true) * r, q_true)
    qs.append(result.q)
    errors.append(result.q_err)
  spread = np.std(qs, ddof=1)
  assert np.mean(errors) == pytest.approx(spread, rel=0.05)


def test_auc_limits():
  label = np.array([1, 1, 1, 0, 0, 0])
  assert metrics.auc([0.9, 0.8, 0.7, 0.3, 0.2, 0.1], label) == 1.0
  assert metrics.auc([0.1, 0.2, 0.3, 0.7, 0.8, 0.9], label) == 0.0
  assert metrics.auc(np.full(6, 0.4), label) == 0.5


def test_auc_and_roc_by_hand_count():
  # B0 scores 0.8, 0.4, 0.4; anti-B0 scores 0.4, 0.1. Pairs (B0, anti-B0):
  # (0.8, 0.4) 1, (0.8, 0.1) 1, (0.4, 0.4) 1/2 twice, (0.4, 0.1) 1 twice:
  # 5 of 6 pairs.
  score = np.array([0.8, 0.4, 0.4, 0.4, 0.1])
  label = np.array([1, 1, 1, 0, 0])
  assert metrics.auc(score, label) == pytest.approx(5 / 6)
  # Thresholds inf, 0.8, 0.4, 0.1: B0 passing 0, 1, 3, 3 of 3; anti-B0
  # passing 0, 0, 1, 2 of 2.
  fpr, tpr, thresholds = metrics.roc_curve(score, label)
  np.testing.assert_allclose(thresholds, [np.inf, 0.8, 0.4, 0.1])
  np.testing.assert_allclose(tpr, [0, 1 / 3, 1, 1])
  np.testing.assert_allclose(fpr, [0, 0, 0.5, 1])
  # The trapezoid area under this curve is the same 5/6.
  assert np.trapezoid(tpr, fpr) == pytest.approx(5 / 6)


def test_auc_agrees_with_scikit_learn_with_ties():
  rng = np.random.default_rng(4)
  label = rng.integers(0, 2, 5000)
  score = np.round(0.3 * label + rng.normal(0, 0.4, 5000), 1)  # many ties
  assert metrics.auc(score, label) == pytest.approx(
    sk_metrics.roc_auc_score(label, score), abs=1e-12
  )
  fpr, tpr, _ = metrics.roc_curve(score, label)
  sk_fpr, sk_tpr, _ = sk_metrics.roc_curve(
    label, score, drop_intermediate=False
  )
  np.testing.assert_allclose(fpr, sk_fpr)
  np.testing.assert_allclose(tpr, sk_tpr)


def test_calibration_curve_by_hand():
  # Predicted w = (1 - r) / 2: 0.05, 0.05, 0.45, 0.45, 0.5 in bins of width
  # 0.1 (the last closed at 0.5). Bin 0: events 1, 2, event 2 wrong:
  # observed 1/2 +- sqrt(0.25 / 2). Bin 4: events 3-5, only event 5 wrong
  # (qr = 0 tags B0): observed 1/3, mean predicted (0.45 + 0.45 + 0.5) / 3.
  qr = np.array([0.9, -0.9, 0.1, -0.1, 0.0])
  q_true = np.array([1, 1, 1, -1, -1])
  curve = metrics.calibration_curve(qr, q_true, num_bins=5)
  np.testing.assert_allclose(curve.edges, [0, 0.1, 0.2, 0.3, 0.4, 0.5])
  np.testing.assert_array_equal(curve.n_events, [2, 0, 0, 0, 3])
  assert curve.predicted_w[0] == pytest.approx(0.05)
  assert curve.observed_w[0] == pytest.approx(0.5)
  assert curve.observed_w_err[0] == pytest.approx(math.sqrt(0.125))
  assert curve.predicted_w[4] == pytest.approx(1.4 / 3)
  assert curve.observed_w[4] == pytest.approx(1 / 3)
  assert np.all(np.isnan(curve.observed_w[1:4]))


@pytest.mark.parametrize(
  'qr, q_true, match',
  [
    ([0.5, np.nan], [1, -1], 'NaN or inf'),
    ([0.5, 1.5], [1, -1], r'\[-1, 1\]'),
    ([0.5, -0.5], [1, 0], r'\+1 \(B0\) or -1'),
    ([0.5, -0.5], [1, -1, 1], 'shape'),
    ([], [], 'empty'),
  ],
)
def test_bad_input_is_rejected(qr, q_true, match):
  with pytest.raises(ValueError, match=match):
    metrics.binned_q(np.array(qr), np.array(q_true))


def test_bad_bins_and_single_flavor_are_rejected():
  with pytest.raises(ValueError, match='from 0.0 to 1.0'):
    metrics.binned_q(TABLE_QR, TABLE_Q, bins=(0.0, 0.5))
  with pytest.raises(ValueError, match='from 0.0 to 1.0'):
    metrics.binned_q(TABLE_QR, TABLE_Q, bins=(0.0, 0.6, 0.5, 1.0))
  with pytest.raises(ValueError, match='both flavors'):
    metrics.auc([0.1, 0.2], [1, 1])
  with pytest.raises(ValueError, match='label must be 1'):
    metrics.auc([0.1, 0.2], [1, -1])


def test_overtraining_ks_by_hand():
  # B0: train outputs 0.1, 0.2, 0.3 all below test outputs 0.4, 0.5, so the
  # cumulative distributions differ by 1 at qr = 0.3. anti-B0: train -0.5,
  # -0.2 and test -0.4, -0.1: after -0.5 train is at 1/2, test at 0; after
  # -0.4 both at 1/2; after -0.2 train at 1, test at 1/2: D = 1/2.
  ks = metrics.overtraining_ks(
    [0.1, 0.2, 0.3, -0.5, -0.2],
    [1, 1, 1, -1, -1],
    [0.4, 0.5, -0.4, -0.1],
    [1, 1, -1, -1],
  )
  assert ks['B0'].statistic == pytest.approx(1.0)
  assert ks['anti-B0'].statistic == pytest.approx(0.5)


def test_overtraining_ks_separates_shifted_from_same_distribution():
  rng = np.random.default_rng(5)
  q = rng.choice([-1, 1], 4000)
  same = metrics.overtraining_ks(
    rng.uniform(-1, 1, 4000), q, rng.uniform(-1, 1, 4000), q
  )
  # Uniform on [-1, 0.6] against [-0.8, 0.8]: both 1.6 wide, shifted by 0.2,
  # so the CDFs differ by D = 0.2 / 1.6 = 0.125 where they overlap.
  shifted = metrics.overtraining_ks(
    rng.uniform(-1, 0.6, 4000), q, rng.uniform(-0.8, 0.8, 4000), q
  )
  assert same['B0'].pvalue > 1e-3 and same['anti-B0'].pvalue > 1e-3
  assert shifted['B0'].statistic == pytest.approx(0.125, abs=0.04)
  assert shifted['B0'].pvalue < 1e-6
