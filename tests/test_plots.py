"""Tests that the evaluation plots are written as readable PNG files."""

from matplotlib import image
import numpy as np
import pytest

from flavortag_jax import metrics, plots


def _calibrated_sample(rng, n, sharpness):
  """qr with r = u^sharpness, wrong with probability (1 - r) / 2."""
  r = rng.random(n) ** sharpness
  q_true = rng.choice([-1, 1], n)
  wrong = rng.random(n) < (1 - r) / 2
  return np.where(wrong, -q_true, q_true) * r, q_true


def _check_png(path, min_width):
  pixels = image.imread(path)
  assert pixels.ndim == 3 and pixels.shape[1] >= min_width
  # A drawn figure is not a blank canvas.
  assert pixels[..., :3].std() > 0.05
  # Only the final file is left, no temporary one.
  assert sorted(p.name for p in path.parent.iterdir()) == [path.name]


@pytest.fixture(name='samples')
def fixture_samples():
  rng = np.random.default_rng(0)
  return {
    'dnn': _calibrated_sample(rng, 4000, 1.0),
    'category': _calibrated_sample(rng, 4000, 1.5),
  }


def test_roc_curves(samples, tmp_path):
  path = plots.roc_curves(samples, tmp_path / 'roc.png')
  _check_png(path, 500)


def test_q_per_bin(samples, tmp_path):
  results = {name: metrics.summary(*s) for name, s in samples.items()}
  path = plots.q_per_bin(results, tmp_path / 'q_bins.png')
  _check_png(path, 700)


def test_q_per_bin_rejects_mixed_bins(samples, tmp_path):
  results = {
    'dnn': metrics.summary(*samples['dnn']),
    'category': metrics.summary(*samples['category'], bins=(0.0, 0.5, 1.0)),
  }
  with pytest.raises(ValueError, match='same bins'):
    plots.q_per_bin(results, tmp_path / 'q_bins.png')


def test_calibration(samples, tmp_path):
  curves = {
    name: metrics.calibration_curve(*s, num_bins=8)
    for name, s in samples.items()
  }
  path = plots.calibration(curves, tmp_path / 'calibration.png')
  _check_png(path, 500)


def test_overtraining(samples, tmp_path):
  rng = np.random.default_rng(1)
  train_qr, train_q = _calibrated_sample(rng, 8000, 1.0)
  path = plots.overtraining(
    train_qr, train_q, *samples['dnn'], tmp_path / 'overtraining.png'
  )
  _check_png(path, 600)


def test_loss_curves(tmp_path):
  history = [
    {
      'epoch': e,
      'train_loss': 0.69 - 0.01 * e,
      'valid_loss': 0.69 - 0.008 * e,
      'valid_auc': 0.6 + 0.01 * e,
      'valid_q': 0.1 + 0.01 * e,
    }
    for e in range(5)
  ]
  path = plots.loss_curves(history, tmp_path / 'loss.png')
  _check_png(path, 1000)


def test_loss_curves_reject_bad_history(tmp_path):
  with pytest.raises(ValueError, match='empty'):
    plots.loss_curves([], tmp_path / 'loss.png')
  with pytest.raises(ValueError, match='valid_loss'):
    plots.loss_curves([{'epoch': 0, 'train_loss': 0.6}], tmp_path / 'loss.png')
  assert list(tmp_path.iterdir()) == []
