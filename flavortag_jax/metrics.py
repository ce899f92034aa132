"""Figures of merit of a flavor tagger: AUC, wrong-tag fractions and Q.

Every function takes the tagger output `qr` in [-1, 1] (or a score such as
y = P(B0) = (1 + qr) / 2) and the true tag-side flavor `q_true` (+1 for B0,
-1 for anti-B0), as arrays of shape [events].

Conventions:
  r = |qr| is the dilution and q_pred = sign(qr) the predicted flavor. An event
  with qr == 0 exactly is counted as tagged B0 (q_pred = +1), the same choice
  as y >= 0.5; such events sit in the lowest r bin, where they contribute
  almost nothing to Q whatever their tag. A wrong tag is q_pred != q_true.

  r bins are [r_lo, r_hi), the last one closed at r = 1. The fraction of bin i
  is eps_i = N_i / N over all N events; its wrong-tag fraction is w_i =
  (wrong tags in bin i) / N_i, with the binomial error sqrt(w_i (1 - w_i) /
  N_i); dw_i = w_i(q_true = +1) - w_i(q_true = -1). The effective tagging
  efficiency is Q = sum_i eps_i (1 - 2 w_i)^2.

Statistical error of Q (see `binned_q`): the numbers of right and wrong tags
in all bins, (R_1, W_1, ..., R_k, W_k), follow one multinomial distribution
of N trials with probabilities p_{iR} = eps_i (1 - w_i), p_{iW} = eps_i w_i.
Q = sum_i (R_i - W_i)^2 / (N (R_i + W_i)) is a function of the fractions
f_j = n_j / N, whose covariance is (diag(p) - p p^T) / N, so by error
propagation

  sigma_Q^2 = (sum_j p_j g_j^2 - (sum_j p_j g_j)^2) / N,   g_j = dQ / df_j.

With d_i = 1 - 2 w_i the derivatives are g_{iR} = d_i (1 + 2 w_i) and
g_{iW} = -d_i (3 - 2 w_i); then sum_j p_j g_j = Q (Q is homogeneous of degree
one in the f_j) and sum_j p_j g_j^2 = sum_i eps_i d_i^2 (1 + 12 w_i (1 - w_i)),
which gives

  sigma_Q^2 = [sum_i eps_i d_i^2 (1 + 12 w_i (1 - w_i)) - Q^2] / N.

For a single bin this reduces to the binomial result (dQ/dw)^2 w (1 - w) / N =
16 d^2 w (1 - w) / N; the -Q^2 term is the anticorrelation of the eps_i.
"""

import dataclasses
import math
from typing import Any

import numpy as np
from scipy import stats

# Belle r bin edges (the binning of the Belle and Belle II flavor taggers).
BELLE_R_BINS = (0.0, 0.1, 0.25, 0.5, 0.625, 0.75, 0.875, 1.0)


@dataclasses.dataclass(frozen=True)
class BinResult:
  """Tagging figures of one r bin.

  Attributes:
    r_lo: Lower edge of the bin (included).
    r_hi: Upper edge (excluded, except 1.0).
    eff: eps_i = N_i / N, the fraction of all events in the bin.
    w: Wrong-tag fraction w_i; NaN for an empty bin.
    w_err: Binomial error of w_i; NaN for an empty bin.
    dw: w_i(B0) - w_i(anti-B0); NaN unless both flavors are in the bin.
    q: eps_i (1 - 2 w_i)^2, the bin's share of Q (0 for an empty bin).
    n_events: N_i.
  """

  r_lo: float
  r_hi: float
  eff: float
  w: float
  w_err: float
  dw: float
  q: float
  n_events: int


@dataclasses.dataclass(frozen=True)
class QResult:
  """Effective tagging efficiency in r bins.

  Attributes:
    q: Q = sum_i eps_i (1 - 2 w_i)^2.
    q_err: Statistical error of Q (multinomial, see the module docstring).
    bins: One BinResult per r bin.
    n_events: N, the number of events.
  """

  q: float
  q_err: float
  bins: list[BinResult]
  n_events: int


@dataclasses.dataclass(frozen=True)
class CalibrationCurve:
  """Observed against predicted wrong-tag fraction.

  Attributes:
    edges: Bin edges in predicted w = (1 - r) / 2, shape [num_bins + 1].
    predicted_w: Mean predicted w per bin, shape [num_bins] (NaN if empty).
    observed_w: Observed wrong-tag fraction per bin, shape [num_bins].
    observed_w_err: Binomial error of observed_w, shape [num_bins].
    n_events: Events per bin, shape [num_bins].
  """

  edges: np.ndarray
  predicted_w: np.ndarray
  observed_w: np.ndarray
  observed_w_err: np.ndarray
  n_events: np.ndarray


def _check_qr(qr: Any) -> np.ndarray:
  qr = np.asarray(qr, np.float64)
  if qr.ndim != 1:
    raise ValueError(
      f'tagger output qr must have shape [events], found shape {qr.shape}'
    )
  if qr.size == 0:
    raise ValueError('no events: qr is empty; evaluate on a non-empty sample')
  if not np.all(np.isfinite(qr)):
    raise ValueError(
      f'tagger output qr holds {np.sum(~np.isfinite(qr))} NaN or inf values; '
      'check the tagger and its inputs'
    )
  if np.any(np.abs(qr) > 1.0):
    raise ValueError(
      f'tagger output qr must lie in [-1, 1], found values from {qr.min()} '
      f'to {qr.max()}; pass qr = 2 P(B0) - 1, not a logit'
    )
  return qr


def _check_q_true(q_true: Any, size: int) -> np.ndarray:
  q_true = np.asarray(q_true)
  if q_true.shape != (size,):
    raise ValueError(
      f'true flavors q_true must have shape [{size}] like qr, found shape '
      f'{q_true.shape}'
    )
  values = np.unique(q_true)
  if not np.all(np.isin(values, (-1, 1))):
    raise ValueError(
      f'true flavors q_true must be +1 (B0) or -1 (anti-B0), found values '
      f'{values[:5].tolist()}; convert 0/1 labels with q = 2 * label - 1'
    )
  return q_true.astype(np.int64)


def check_r_bins(bins: Any) -> np.ndarray:
  """Returns r bin edges as an array, shape [num_bins + 1], if valid.

  Raises:
    ValueError: The edges do not increase strictly from 0.0 to 1.0.
  """
  edges = np.asarray(bins, np.float64)
  if (
    edges.ndim != 1
    or edges.size < 2
    or np.any(np.diff(edges) <= 0)
    or edges[0] != 0.0
    or edges[-1] != 1.0
  ):
    raise ValueError(
      f'r bin edges must increase strictly from 0.0 to 1.0 so that every '
      f'event falls in a bin, found {edges.tolist()}; for example '
      f'{BELLE_R_BINS}'
    )
  return edges


def predicted_flavor(qr: Any) -> np.ndarray:
  """Returns q_pred = sign(qr), with qr == 0 tagged B0; shape [events]."""
  return np.where(np.asarray(qr) >= 0, 1, -1)


def _check_labels(score: Any, label: Any) -> tuple[np.ndarray, np.ndarray]:
  score = np.asarray(score, np.float64)
  label = np.asarray(label)
  if score.ndim != 1 or label.shape != score.shape:
    raise ValueError(
      f'score and label must both have shape [events], found {score.shape} '
      f'and {label.shape}'
    )
  if not np.all(np.isfinite(score)):
    raise ValueError('score holds NaN or inf values; check the tagger output')
  if not np.all(np.isin(label, (0, 1))):
    raise ValueError(
      f'label must be 1 (B0) or 0 (anti-B0), found values '
      f'{np.unique(label)[:5].tolist()}; convert flavors with q_true == 1'
    )
  label = label.astype(bool)
  if label.all() or not label.any():
    raise ValueError(
      f'ROC and AUC need events of both flavors, found {label.sum()} B0 and '
      f'{(~label).sum()} anti-B0'
    )
  return score, label


def roc_curve(
  score: Any, label: Any
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Returns the ROC curve of a score that separates B0 from anti-B0.

  An event counts as tagged B0 when its score is >= the threshold.

  Args:
    score: Larger for B0-like events, e.g. qr or P(B0), shape [events].
    label: 1 for B0 and 0 for anti-B0, shape [events].

  Returns:
    (fpr, tpr, thresholds), each shape [distinct scores + 1]: anti-B0 and B0
    efficiency for each threshold, from (0, 0) at threshold +inf down to
    (1, 1) at the lowest score.
  """
  score, label = _check_labels(score, label)
  values, inverse = np.unique(score, return_inverse=True)
  positives = np.bincount(inverse, weights=label, minlength=values.size)
  totals = np.bincount(inverse, minlength=values.size)
  # Walk thresholds from the highest score down.
  tp = np.concatenate([[0.0], np.cumsum(positives[::-1])])
  fp = np.concatenate([[0.0], np.cumsum((totals - positives)[::-1])])
  thresholds = np.concatenate([[np.inf], values[::-1]])
  return fp / fp[-1], tp / tp[-1], thresholds


def auc(score: Any, label: Any) -> float:
  """Returns the area under the ROC curve.

  Mann-Whitney form: the probability that a random B0 scores above a random
  anti-B0, ties counted 1/2, computed from the average ranks of the scores.

  Args:
    score: Larger for B0-like events, shape [events].
    label: 1 for B0 and 0 for anti-B0, shape [events].

  Returns:
    AUC in [0, 1].
  """
  score, label = _check_labels(score, label)
  _, inverse, counts = np.unique(score, return_inverse=True, return_counts=True)
  # Ranks 1..n; tied scores share the mean of the ranks they span.
  last_rank = np.cumsum(counts).astype(np.float64)
  mean_rank = last_rank - (counts - 1) / 2.0
  ranks = mean_rank[inverse]
  n_pos = float(label.sum())
  n_neg = float(label.size - n_pos)
  u = ranks[label].sum() - n_pos * (n_pos + 1) / 2.0
  return float(u / (n_pos * n_neg))


def binned_q(qr: Any, q_true: Any, bins: Any = BELLE_R_BINS) -> QResult:
  """Returns the effective tagging efficiency Q in bins of r = |qr|.

  Args:
    qr: Tagger output in [-1, 1], shape [events].
    q_true: True flavor, +1 or -1, shape [events].
    bins: Increasing r bin edges from 0.0 to 1.0, shape [num_bins + 1].

  Returns:
    Q, its statistical error and the per-bin figures.
  """
  qr = _check_qr(qr)
  q_true = _check_q_true(q_true, qr.size)
  edges = check_r_bins(bins)
  num_bins = edges.size - 1
  n = qr.size

  r = np.abs(qr)
  index = np.clip(np.searchsorted(edges, r, side='right') - 1, 0, num_bins - 1)
  wrong = predicted_flavor(qr) != q_true
  b0 = q_true == 1

  def count(mask=None):
    return np.bincount(index, weights=mask, minlength=num_bins)

  n_bin = count()
  with np.errstate(invalid='ignore', divide='ignore'):
    w = count(wrong) / n_bin
    w_err = np.sqrt(w * (1 - w) / n_bin)
    dw = count(wrong & b0) / count(b0) - count(wrong & ~b0) / count(~b0)
  eff = n_bin / n
  dilution = 1 - 2 * np.nan_to_num(w)
  q_bin = eff * dilution**2
  q = float(q_bin.sum())

  second_moment = np.sum(
    eff * dilution**2 * (1 + 12 * np.nan_to_num(w * (1 - w)))
  )
  q_err = math.sqrt(max(second_moment - q**2, 0.0) / n)

  results = [
    BinResult(
      r_lo=float(edges[i]),
      r_hi=float(edges[i + 1]),
      eff=float(eff[i]),
      w=float(w[i]),
      w_err=float(w_err[i]),
      dw=float(dw[i]),
      q=float(q_bin[i]),
      n_events=int(n_bin[i]),
    )
    for i in range(num_bins)
  ]
  return QResult(q=q, q_err=q_err, bins=results, n_events=n)


def unbinned_q(qr: Any) -> float:
  """Returns Q = mean(r^2) = mean((2y - 1)^2) of a calibrated output.

  NOTE: This equals the true Q only when the output is calibrated, that is
  when an event with output qr is wrongly tagged with probability
  (1 - |qr|) / 2; for an uncalibrated output it is the Q the tagger claims.

  Args:
    qr: Tagger output in [-1, 1], shape [events].
  """
  qr = _check_qr(qr)
  return float(np.mean(qr**2))


def accuracy(qr: Any, q_true: Any) -> float:
  """Returns the fraction of events with the right tag, sign(qr) == q_true.

  Args:
    qr: Tagger output in [-1, 1], shape [events].
    q_true: True flavor, +1 or -1, shape [events].
  """
  qr = _check_qr(qr)
  q_true = _check_q_true(q_true, qr.size)
  return float(np.mean(predicted_flavor(qr) == q_true))


def calibration_curve(
  qr: Any, q_true: Any, num_bins: int = 10
) -> CalibrationCurve:
  """Returns the observed wrong-tag fraction in bins of predicted w.

  A calibrated tagger has observed w equal to predicted w = (1 - r) / 2.

  Args:
    qr: Tagger output in [-1, 1], shape [events].
    q_true: True flavor, +1 or -1, shape [events].
    num_bins: Number of equal bins of predicted w over [0, 0.5].

  Returns:
    The curve, with binomial errors on the observed fractions.
  """
  qr = _check_qr(qr)
  q_true = _check_q_true(q_true, qr.size)
  if num_bins < 1:
    raise ValueError(f'num_bins must be at least 1, found {num_bins}')
  edges = np.linspace(0.0, 0.5, num_bins + 1)
  predicted = (1 - np.abs(qr)) / 2
  index = np.clip(
    np.searchsorted(edges, predicted, side='right') - 1, 0, num_bins - 1
  )
  wrong = predicted_flavor(qr) != q_true
  n_bin = np.bincount(index, minlength=num_bins)
  with np.errstate(invalid='ignore', divide='ignore'):
    mean_predicted = (
      np.bincount(index, weights=predicted, minlength=num_bins) / n_bin
    )
    observed = np.bincount(index, weights=wrong, minlength=num_bins) / n_bin
    observed_err = np.sqrt(observed * (1 - observed) / n_bin)
  return CalibrationCurve(
    edges=edges,
    predicted_w=mean_predicted,
    observed_w=observed,
    observed_w_err=observed_err,
    n_events=n_bin,
  )


@dataclasses.dataclass(frozen=True)
class KSResult:
  """Kolmogorov-Smirnov comparison of train and test outputs of one flavor.

  Attributes:
    statistic: Largest distance between the two cumulative distributions.
    pvalue: Probability of a distance at least this large if both samples
      came from one distribution.
  """

  statistic: float
  pvalue: float


def overtraining_ks(
  train_qr: Any, train_q: Any, test_qr: Any, test_q: Any
) -> dict[str, KSResult]:
  """Compares the output distributions on train and test events per flavor.

  An overtrained tagger is sharper on the events it was trained on, so its
  train and test distributions differ; a small p-value flags it.

  Args:
    train_qr: Output on training events, shape [train events].
    train_q: Their true flavors, shape [train events].
    test_qr: Output on unseen events, shape [test events].
    test_q: Their true flavors, shape [test events].

  Returns:
    Dict 'B0' and 'anti-B0' -> KSResult.
  """
  train_qr = _check_qr(train_qr)
  test_qr = _check_qr(test_qr)
  train_q = _check_q_true(train_q, train_qr.size)
  test_q = _check_q_true(test_q, test_qr.size)
  results = {}
  for name, flavor in (('B0', 1), ('anti-B0', -1)):
    train, test = train_qr[train_q == flavor], test_qr[test_q == flavor]
    if train.size == 0 or test.size == 0:
      raise ValueError(
        f'the overtraining check needs {name} events in both samples, found '
        f'{train.size} in train and {test.size} in test'
      )
    ks = stats.ks_2samp(train, test)
    results[name] = KSResult(float(ks.statistic), float(ks.pvalue))
  return results


def _json_number(value: float) -> float | None:
  return None if math.isnan(value) else value


def summary(qr: Any, q_true: Any, bins: Any = BELLE_R_BINS) -> dict[str, Any]:
  """Returns every figure of merit as a JSON-ready dict.

  Undefined numbers (w of an empty bin, dw of a bin without both flavors)
  are None. The AUC is of qr as a B0 score.

  Args:
    qr: Tagger output in [-1, 1], shape [events].
    q_true: True flavor, +1 or -1, shape [events].
    bins: r bin edges from 0.0 to 1.0.

  Returns:
    Dict with auc, q, q_err, q_unbinned, accuracy, n_events and bins (a list
    of dicts with r_lo, r_hi, eff, w, w_err, dw, q).
  """
  result = binned_q(qr, q_true, bins)
  return {
    'auc': auc(qr, np.asarray(q_true) == 1),
    'q': result.q,
    'q_err': result.q_err,
    'q_unbinned': unbinned_q(qr),
    'accuracy': accuracy(qr, q_true),
    'n_events': result.n_events,
    'bins': [
      {
        'r_lo': b.r_lo,
        'r_hi': b.r_hi,
        'eff': b.eff,
        'w': _json_number(b.w),
        'w_err': _json_number(b.w_err),
        'dw': _json_number(b.dw),
        'q': b.q,
      }
      for b in result.bins
    ],
  }
