"""Evaluation plots of flavor taggers, written as PNG files.

Each function draws one figure with matplotlib's object interface (no pyplot
state, Agg rendering, so it runs without a display), writes it under a
temporary name and renames it when complete, and returns the path.
"""

from collections.abc import Mapping, Sequence
import os
import pathlib
from typing import Any

from matplotlib import ticker
from matplotlib.figure import Figure
import numpy as np

from flavortag_jax import atomic, metrics

# Colors of the two flavors in the output distributions.
_FLAVOR_COLORS = {'B0': 'tab:blue', 'anti-B0': 'tab:red'}
# At most this many points are drawn per ROC curve.
_MAX_ROC_POINTS = 2000


def _save(figure: Figure, path: str | os.PathLike) -> pathlib.Path:
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  with atomic.temporary_path(path) as tmp:
    figure.savefig(tmp, format='png', dpi=110)
  return path


def roc_curves(
  outputs: Mapping[str, tuple[np.ndarray, np.ndarray]],
  path: str | os.PathLike,
  title: str = 'ROC: B0 against anti-B0',
) -> pathlib.Path:
  """Draws the ROC curves of several taggers on one plot.

  Args:
    outputs: Tagger name -> (qr shape [events], q_true shape [events]).
    path: PNG file to write.
    title: Figure title.

  Returns:
    The path written.
  """
  figure = Figure(figsize=(6, 5.5), layout='constrained')
  ax = figure.subplots()
  for name, (qr, q_true) in outputs.items():
    label = np.asarray(q_true) == 1
    fpr, tpr, _ = metrics.roc_curve(qr, label)
    keep = np.unique(np.linspace(0, fpr.size - 1, _MAX_ROC_POINTS).astype(int))
    ax.plot(
      fpr[keep], tpr[keep], label=f'{name} (AUC = {metrics.auc(qr, label):.4f})'
    )
  ax.plot([0, 1], [0, 1], color='gray', linestyle=':', label='no separation')
  ax.set(
    xlabel='anti-B0 tagged as B0 (false positive rate)',
    ylabel='B0 tagged as B0 (true positive rate)',
    xlim=(0, 1),
    ylim=(0, 1),
    title=title,
  )
  ax.grid(alpha=0.3)
  ax.legend(loc='lower right')
  return _save(figure, path)


def loss_curves(
  history: Sequence[Mapping[str, Any]],
  path: str | os.PathLike,
  title: str = 'Training history',
) -> pathlib.Path:
  """Draws train and validation loss per epoch, and validation AUC and Q.

  Args:
    history: One dict per epoch with at least epoch, train_loss and
      valid_loss; valid_auc and valid_q are drawn when present.
    path: PNG file to write.
    title: Figure title.

  Returns:
    The path written.
  """
  if not history:
    raise ValueError('the training history is empty: no epoch to draw')
  missing = {'epoch', 'train_loss', 'valid_loss'} - set(history[0])
  if missing:
    raise ValueError(
      f'the training history lacks {sorted(missing)}; expected per-epoch '
      f'dicts with epoch, train_loss, valid_loss, found keys '
      f'{sorted(history[0])}'
    )

  def column(key):
    return np.array([np.nan if e.get(key) is None else e[key] for e in history])

  epoch = column('epoch')
  figure = Figure(figsize=(11, 4.5), layout='constrained')
  loss_ax, score_ax = figure.subplots(1, 2)
  loss_ax.plot(epoch, column('train_loss'), marker='.', label='train')
  loss_ax.plot(epoch, column('valid_loss'), marker='.', label='validation')
  loss_ax.set(xlabel='epoch', ylabel='binary cross-entropy', title='Loss')
  loss_ax.grid(alpha=0.3)
  loss_ax.legend()
  for ax in (loss_ax, score_ax):
    ax.xaxis.set_major_locator(ticker.MaxNLocator(integer=True))

  for key, label in (
    ('valid_auc', 'validation AUC'),
    ('valid_q', 'validation Q'),
  ):
    if key in history[0]:
      score_ax.plot(epoch, column(key), marker='.', label=label)
  score_ax.set(xlabel='epoch', title='Validation AUC and Q')
  score_ax.grid(alpha=0.3)
  if score_ax.lines:
    score_ax.legend()
  figure.suptitle(title)
  return _save(figure, path)


def overtraining(
  train_qr: np.ndarray,
  train_q: np.ndarray,
  test_qr: np.ndarray,
  test_q: np.ndarray,
  path: str | os.PathLike,
  title: str = 'Overtraining check',
  num_bins: int = 40,
) -> pathlib.Path:
  """Draws the train and test output distributions of each flavor.

  Train events are filled histograms, test events points with Poisson
  errors, both normalized to unit area; the legend gives the
  Kolmogorov-Smirnov distance and p-value of train against test.

  Args:
    train_qr: Output on training events, shape [train events].
    train_q: Their true flavors, shape [train events].
    test_qr: Output on unseen events, shape [test events].
    test_q: Their true flavors, shape [test events].
    path: PNG file to write.
    title: Figure title.
    num_bins: Histogram bins over qr in [-1, 1].

  Returns:
    The path written.
  """
  ks = metrics.overtraining_ks(train_qr, train_q, test_qr, test_q)
  train_qr, test_qr = np.asarray(train_qr), np.asarray(test_qr)
  train_q, test_q = np.asarray(train_q), np.asarray(test_q)
  edges = np.linspace(-1, 1, num_bins + 1)
  centers = (edges[:-1] + edges[1:]) / 2
  width = edges[1] - edges[0]

  figure = Figure(figsize=(7, 5), layout='constrained')
  ax = figure.subplots()
  for name, flavor in (('B0', 1), ('anti-B0', -1)):
    color = _FLAVOR_COLORS[name]
    train = train_qr[train_q == flavor]
    test = test_qr[test_q == flavor]
    ax.hist(
      train,
      bins=edges,
      density=True,
      histtype='stepfilled',
      alpha=0.3,
      color=color,
      label=f'{name} train',
    )
    counts, _ = np.histogram(test, bins=edges)
    scale = 1 / (test.size * width)
    ax.errorbar(
      centers,
      counts * scale,
      yerr=np.sqrt(counts) * scale,
      fmt='o',
      markersize=3,
      color=color,
      label=(
        f'{name} test (KS D = {ks[name].statistic:.3f}, '
        f'p = {ks[name].pvalue:.2g})'
      ),
    )
  ax.set(
    xlabel='tagger output qr',
    ylabel='normalized events',
    xlim=(-1, 1),
    title=title,
  )
  # Headroom so that the legend does not hide the distributions.
  ax.set_ylim(0, 1.4 * ax.get_ylim()[1])
  ax.legend(loc='upper center', fontsize='small')
  return _save(figure, path)


def q_per_bin(
  results: Mapping[str, Mapping[str, Any]],
  path: str | os.PathLike,
  title: str = 'Effective efficiency per r bin',
) -> pathlib.Path:
  """Draws eps_i (1 - 2 w_i)^2 per r bin as bars, taggers side by side.

  Args:
    results: Tagger name -> metrics.summary dict; all with the same bins.
    path: PNG file to write.
    title: Figure title.

  Returns:
    The path written.
  """
  if not results:
    raise ValueError('no tagger results to draw')
  names = list(results)
  edges = [(b['r_lo'], b['r_hi']) for b in results[names[0]]['bins']]
  for name in names[1:]:
    if [(b['r_lo'], b['r_hi']) for b in results[name]['bins']] != edges:
      raise ValueError(
        f'tagger {name!r} uses other r bins than {names[0]!r}; evaluate all '
        'taggers with the same bins to compare them'
      )

  figure = Figure(figsize=(8, 5), layout='constrained')
  ax = figure.subplots()
  positions = np.arange(len(edges))
  width = 0.8 / len(names)
  for k, name in enumerate(names):
    result = results[name]
    ax.bar(
      positions + (k - (len(names) - 1) / 2) * width,
      [100 * b['q'] for b in result['bins']],
      width=width,
      label=(
        f'{name}: Q = {100 * result["q"]:.2f} +- {100 * result["q_err"]:.2f} %'
      ),
    )
  ax.set_xticks(positions, [f'[{lo:g}, {hi:g})' for lo, hi in edges])
  ax.set(
    xlabel='r bin',
    ylabel='eps_i (1 - 2 w_i)^2  [%]',
    title=title,
  )
  ax.grid(axis='y', alpha=0.3)
  ax.legend()
  return _save(figure, path)


def calibration(
  curves: Mapping[str, metrics.CalibrationCurve],
  path: str | os.PathLike,
  title: str = 'Calibration of the wrong-tag fraction',
) -> pathlib.Path:
  """Draws observed against predicted w for several taggers.

  Args:
    curves: Tagger name -> metrics.calibration_curve result.
    path: PNG file to write.
    title: Figure title.

  Returns:
    The path written.
  """
  figure = Figure(figsize=(6, 5.5), layout='constrained')
  ax = figure.subplots()
  ax.plot([0, 0.5], [0, 0.5], color='gray', linestyle=':', label='calibrated')
  for name, curve in curves.items():
    filled = curve.n_events > 0
    ax.errorbar(
      curve.predicted_w[filled],
      curve.observed_w[filled],
      yerr=curve.observed_w_err[filled],
      fmt='o-',
      markersize=4,
      capsize=2,
      label=name,
    )
  ax.set(
    xlabel='predicted w = (1 - r) / 2',
    ylabel='observed wrong-tag fraction',
    xlim=(0, 0.5),
    ylim=(-0.02, 0.6),
    title=title,
  )
  ax.grid(alpha=0.3)
  ax.legend(loc='upper left')
  return _save(figure, path)
