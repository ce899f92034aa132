"""Quantile normalization of the features onto [-1, 1], fitted on training.

Each feature column gets its own equal-frequency binning: num_bins + 1 edges
at the quantiles k / num_bins (k = 0..num_bins) of its present training
values. A value maps to its position among the edges, interpolated linearly
inside a bin, scaled from [0, num_bins] onto [-1, 1]; padding maps to 0.

Repeated values (a PID likelihood ratio of exactly 0 or 1, hit counts) make
runs of equal edges. A value equal to a run of edges j..k maps to the middle
of the run, (j + k) / 2: all ties share one output, which is their mid-rank
(the middle of the quantile range the value fills) to within half a bin, so
the mean output over the training data stays near 0; and the map stays
monotonic (non-decreasing, and strictly increasing between distinct edges).
Taking the first or last edge of a run instead would push every tied value
to one end of its range (PID = 0 in 30 % of tracks would all map to -1).
Values below the first edge or above the last map to -1 and +1. Edges are
data values (inverted CDF, no interpolation), so ties give exactly equal
edges.

The normalizer does not check its inputs for NaN inside the compiled map;
the raw features are checked where they enter (features.pad_tracks and
QuantileNormalizer.fit).
"""

import dataclasses
import os
import pathlib

import jax
import jax.numpy as jnp
import numpy as np

from flavortag_jax import atomic

FORMAT_NAME = 'flavortag_jax.quantile_normalizer'
FORMAT_VERSION = 1
DEFAULT_NUM_BINS = 1024


class NormalizerError(ValueError):
  """A normalizer file is missing, foreign, or for other features."""


def _position(edges: jax.Array, x: jax.Array) -> jax.Array:
  """Position of values among one column's edges, in [0, num_bins].

  Args:
    edges: Shape [num_bins + 1], non-decreasing.
    x: Shape [events].

  Returns:
    Shape [events] float32.
  """
  num_edges = edges.shape[0]
  below = jnp.searchsorted(edges, x, side='left')  # edges < x
  at_most = jnp.searchsorted(edges, x, side='right')  # edges <= x

  # x equals edges below..at_most-1: the middle of that run.
  tied = (below + at_most - 1) / 2.0

  # x strictly between edges[below - 1] and edges[below]; below the first
  # edge lo = hi = 0 and the clipped fraction gives position 0.
  lo = jnp.clip(below - 1, 0, num_edges - 1)
  hi = jnp.clip(below, 0, num_edges - 1)
  width = edges[hi] - edges[lo]
  fraction = (x - edges[lo]) / jnp.where(width > 0, width, 1.0)
  between = lo + jnp.clip(fraction, 0.0, 1.0)

  position = jnp.where(at_most > below, tied, between)
  # Above the last edge: num_bins.
  return jnp.where(below >= num_edges, num_edges - 1.0, position)


@jax.jit
def quantile_transform(
  edges: jax.Array, values: jax.Array, present: jax.Array
) -> jax.Array:
  """Maps feature values onto [-1, 1] through per-column quantile edges.

  Args:
    edges: Shape [features, num_bins + 1] float32, each row non-decreasing.
    values: Shape [events, features].
    present: Shape [events, features] bool; False entries give 0.

  Returns:
    Shape [events, features] float32 in [-1, 1].
  """
  num_bins = edges.shape[1] - 1
  values = jnp.asarray(values, jnp.float32)
  position = jax.vmap(_position, in_axes=(0, 1), out_axes=1)(edges, values)
  normalized = 2.0 * position / num_bins - 1.0
  return jnp.where(present, normalized, 0.0).astype(jnp.float32)


def fit_edges(
  values: np.ndarray, present: np.ndarray, num_bins: int
) -> np.ndarray:
  """Equal-frequency bin edges of one column from its present values.

  Args:
    values: Shape [events].
    present: Shape [events] bool.
    num_bins: Number of bins.

  Returns:
    Shape [num_bins + 1] float32: the values at quantiles k / num_bins,
    taken from the data (no interpolation), so repeated values give exactly
    equal edges.
  """
  column = np.asarray(values, np.float32)[np.asarray(present, bool)]
  quantiles = np.arange(num_bins + 1) / num_bins
  return np.quantile(column, quantiles, method='inverted_cdf').astype(
    np.float32
  )


@dataclasses.dataclass(frozen=True)
class QuantileNormalizer:
  """Per-column quantile maps fitted on the training split.

  Attributes:
    feature_names: The columns, in order.
    edges: Shape [features, num_bins + 1] float32.
  """

  feature_names: tuple[str, ...]
  edges: np.ndarray

  @property
  def num_bins(self) -> int:
    return self.edges.shape[1] - 1

  @classmethod
  def fit(
    cls,
    values: np.ndarray,
    present: np.ndarray,
    feature_names: tuple[str, ...],
    num_bins: int = DEFAULT_NUM_BINS,
  ) -> 'QuantileNormalizer':
    """Fits the quantile edges of each column on its present values.

    Padded entries (present False) never enter the fit.

    Args:
      values: Shape [events, features].
      present: Shape [events, features] bool.
      feature_names: Names of the columns, length features.
      num_bins: Bins per column (at least 1).

    Returns:
      The fitted normalizer.

    Raises:
      ValueError: Shapes disagree, num_bins < 1, a present value is NaN or
        infinite, or a column has no present value (for example a data set
        whose events have no tracks).
    """
    values = np.asarray(values, np.float32)
    present = np.asarray(present, bool)
    feature_names = tuple(feature_names)
    if values.ndim != 2 or values.shape != present.shape:
      raise ValueError(
        f'values {values.shape} and present {present.shape} must have the '
        'same shape [events, features]'
      )
    if values.shape[1] != len(feature_names):
      raise ValueError(
        f'values have {values.shape[1]} columns but {len(feature_names)} '
        'feature names were given'
      )
    if num_bins < 1:
      raise ValueError(f'num_bins is {num_bins}, expected at least 1')
    bad = present & ~np.isfinite(values)
    if bad.any():
      event, column = np.argwhere(bad)[0]
      raise ValueError(
        f'{int(bad.sum())} NaN or infinite feature values, for example '
        f'{feature_names[column]!r} of event {event}; the normalizer needs '
        'finite inputs'
      )
    counts = present.sum(axis=0)
    if not counts.any():
      raise ValueError(
        f'no present feature value in {values.shape[0]} events (every event '
        'is empty or the data set has no events); a normalizer cannot be '
        'fitted, use a data set with tracks'
      )
    empty = [feature_names[i] for i in np.flatnonzero(counts == 0)]
    if empty:
      raise ValueError(
        f'{len(empty)} columns have no present value in the training data, '
        f'for example {empty[:3]}; their quantile maps cannot be fitted, use '
        'more training events'
      )
    edges = np.stack(
      [
        fit_edges(values[:, i], present[:, i], num_bins)
        for i in range(values.shape[1])
      ]
    )
    return cls(feature_names, edges)

  def __call__(self, values: jax.Array, present: jax.Array) -> jax.Array:
    """Normalizes values, shape [events, features], onto [-1, 1].

    Pure JAX (see quantile_transform); padding (present False) maps to 0.

    Raises:
      ValueError: The number of columns differs from the feature names.
    """
    if values.shape[-1] != len(self.feature_names):
      raise ValueError(
        f'values have {values.shape[-1]} columns, the normalizer was fitted '
        f'for {len(self.feature_names)} features'
      )
    return quantile_transform(jnp.asarray(self.edges), values, present)

  def check_features(self, feature_names: tuple[str, ...]) -> None:
    """Raises NormalizerError unless fitted for exactly `feature_names`."""
    feature_names = tuple(feature_names)
    if feature_names == self.feature_names:
      return
    differ = [
      (i, a, b)
      for i, (a, b) in enumerate(
        zip(self.feature_names, feature_names, strict=False)
      )
      if a != b
    ]
    raise NormalizerError(
      f'the normalizer was fitted for {len(self.feature_names)} features, '
      f'the data has {len(feature_names)}; first differences (column, '
      f'normalizer, data): {differ[:3]}; refit the normalizer or use the '
      'feature list it was fitted with'
    )

  def save(self, path: str | os.PathLike) -> pathlib.Path:
    """Writes the normalizer to `path` (npz) atomically; returns the path."""
    path = pathlib.Path(path)
    with atomic.temporary_path(path) as tmp, open(tmp, 'wb') as f:
      np.savez(
        f,
        format=np.str_(FORMAT_NAME),
        format_version=np.int64(FORMAT_VERSION),
        feature_names=np.array(self.feature_names, dtype=np.str_),
        edges=self.edges.astype(np.float32),
      )
    return path

  @classmethod
  def load(
    cls,
    path: str | os.PathLike,
    feature_names: tuple[str, ...] | None = None,
  ) -> 'QuantileNormalizer':
    """Reads a normalizer written by `save`.

    Args:
      path: The file.
      feature_names: If given, the features the caller will normalize; they
        must be exactly those the normalizer was fitted for.

    Raises:
      NormalizerError: The file is missing or not a normalizer, has another
        format version, or was fitted for other features.
    """
    path = pathlib.Path(path)
    if not path.is_file():
      raise NormalizerError(f'{path}: no such normalizer file')
    try:
      with np.load(path, allow_pickle=False) as f:
        content = {k: f[k] for k in f.files}
    except (OSError, ValueError) as e:
      raise NormalizerError(
        f'{path}: not a readable normalizer file (corrupt?): {e}'
      ) from e
    if str(content.get('format', '')) != FORMAT_NAME:
      raise NormalizerError(
        f'{path}: not a flavortag_jax quantile normalizer (format '
        f'{content.get("format")!r}, expected {FORMAT_NAME!r})'
      )
    version = int(content['format_version'])
    if version != FORMAT_VERSION:
      raise NormalizerError(
        f'{path}: format version {version}, this code reads version '
        f'{FORMAT_VERSION}; refit the normalizer'
      )
    names = tuple(str(n) for n in content['feature_names'])
    edges = np.asarray(content['edges'], np.float32)
    if edges.ndim != 2 or edges.shape[0] != len(names):
      raise NormalizerError(
        f'{path}: edges of shape {edges.shape} do not match '
        f'{len(names)} feature names'
      )
    normalizer = cls(names, edges)
    if feature_names is not None:
      normalizer.check_features(feature_names)
    return normalizer
