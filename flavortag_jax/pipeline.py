"""Input pipeline: event splits, normalized features on device, and batches.

Two paths give the same batches for the same key:

- In memory (`load_splits`, `epoch_batches`): the normalized features of a
  split live on the device and each epoch reshuffles them there with
  `jax.random.permutation`. Host memory peaks at the raw features of the
  whole data folder (140 float32 values and 140 flags per event, 700 bytes)
  plus the tracks of one shard; device memory holds 560 bytes per event
  (12 M events: 6.7 GB) and, during an epoch, one shuffled copy.
- Streaming (`build_feature_store`, `FeatureStore.epoch_blocks`): for data
  sets larger than memory. The features are built shard by shard and written
  to disk, the normalizer is fitted one track slot (14 columns) at a time,
  and the normalized features are written to one memory-mapped file. An
  epoch draws the same permutation as the in-memory path and reads its rows
  from the file, a block of steps at a time, placing the next blocks on the
  device while the current one is in use. Host memory holds one shard, 14
  columns of the training split during the fit, the per-event truth (about
  20 bytes per event) and the blocks in flight.

Truth that later studies need (label, q_tag, q_sig, dt, tag_flags and the
event's index in the data folder) travels with each event.
"""

import collections
from collections.abc import Iterator
import dataclasses
import json
import os
import pathlib
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from flavortag_jax import features as features_lib
from flavortag_jax import normalizer as normalizer_lib
from flavortag_jax import parallel, shards, writers

DEFAULT_FRACTIONS = (0.92, 0.04, 0.04)
SPLIT_NAMES = ('train', 'valid', 'test')

# Per-event truth kept next to the features: column -> dtype.
TRUTH_COLUMNS = {
  'q_tag': np.int8,
  'q_sig': np.int8,
  'dt': np.float32,
  'tag_flags': np.uint32,
}

STORE_FORMAT = 'flavortag_jax.feature_store'
STORE_VERSION = 1


def split_indices(
  num_events: int,
  seed: int = 0,
  fractions: tuple[float, float, float] = DEFAULT_FRACTIONS,
) -> dict[str, np.ndarray]:
  """Splits events at random into train, validation and test.

  Args:
    num_events: Number of events.
    seed: Seed of the numpy generator that draws the split.
    fractions: Fractions of (train, valid, test), non-negative, summing to 1.

  Returns:
    Dict 'train' / 'valid' / 'test' -> sorted int64 event indices; split
    sizes are round(cumulative fraction * num_events) differences.

  Raises:
    ValueError: The fractions are invalid or a split would be empty.
  """
  fractions = tuple(float(f) for f in fractions)
  if (
    len(fractions) != 3 or min(fractions) < 0 or abs(sum(fractions) - 1) > 1e-6
  ):
    raise ValueError(
      f'fractions are {fractions}, expected three non-negative numbers '
      '(train, valid, test) summing to 1'
    )
  permutation = np.random.default_rng(seed).permutation(num_events)
  cuts = np.round(np.cumsum(fractions) * num_events).astype(np.int64)
  cuts[-1] = num_events
  parts = np.split(permutation, cuts[:-1])
  splits = {}
  for name, part in zip(SPLIT_NAMES, parts, strict=True):
    if len(part) == 0:
      raise ValueError(
        f'the {name} split is empty: {num_events} events with fractions '
        f'{fractions}; use more events or a larger {name} fraction'
      )
    splits[name] = np.sort(part).astype(np.int64)
  return splits


@dataclasses.dataclass
class Dataset:
  """Normalized features and truth of a set of events.

  Attributes:
    features: Shape [n, 140] float32 on the device, normalized.
    labels: Shape [n] float32 on the device: 1.0 for a B0 tag side
      (q_tag = +1), 0.0 for anti-B0.
    q_tag: Shape [n] int8, tag B flavor at its decay.
    q_sig: Shape [n] int8, signal B flavor at its decay, 0 where undefined.
    dt: Shape [n] float32, true t_sig - t_tag, ps.
    tag_flags: Shape [n] uint32, tag-side decay categories (shards.TAG_FLAGS).
    event_index: Shape [n] int64, index of the event in its data folder.
  """

  features: jax.Array
  labels: jax.Array
  q_tag: np.ndarray
  q_sig: np.ndarray
  dt: np.ndarray
  tag_flags: np.ndarray
  event_index: np.ndarray

  @property
  def num_events(self) -> int:
    return len(self.event_index)

  def flag(self, name: str) -> np.ndarray:
    """Returns the tag-side flag `name` per event, shape [n] bool."""
    return (self.tag_flags & shards.FLAG_BIT[name]) != 0


class Splits(NamedTuple):
  train: Dataset
  valid: Dataset
  test: Dataset
  normalizer: normalizer_lib.QuantileNormalizer


def labels_from_q(q_tag: np.ndarray) -> np.ndarray:
  """Training label per event, shape [n] float32: 1.0 for q_tag = +1."""
  return (np.asarray(q_tag) == 1).astype(np.float32)


def _dataset(
  normalized: np.ndarray | jax.Array,
  truth: dict[str, np.ndarray],
  event_index: np.ndarray,
) -> Dataset:
  return Dataset(
    features=jax.device_put(jnp.asarray(normalized, jnp.float32)),
    labels=jax.device_put(labels_from_q(truth['q_tag'])),
    event_index=np.asarray(event_index, np.int64),
    **{k: np.asarray(truth[k], dtype) for k, dtype in TRUTH_COLUMNS.items()},
  )


def _truth(events: shards.Events) -> dict[str, np.ndarray]:
  return {
    k: np.asarray(events.events[k], dtype) for k, dtype in TRUTH_COLUMNS.items()
  }


def shard_features(
  data_dir: str | os.PathLike, momentum_frame: str = 'lab'
) -> Iterator[tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]]:
  """Reads a data folder shard by shard and builds raw features.

  Args:
    data_dir: Folder of event shards.
    momentum_frame: 'lab' or 'cms': the momentum that ranks the tracks.

  Yields:
    Per shard, in folder order: values [events, 140] float32, present
    [events, 140] bool, and the truth columns (TRUTH_COLUMNS), each [events].

  Raises:
    shards.ShardError: A shard is bad, or the shards mix schema versions or
      generation modes.
  """
  first = None
  for path in shards.shard_paths(data_dir):
    events = shards.read_shard(path)
    if first is None:
      first = events.attrs
    for key in ('schema_version', 'mode'):
      if events.attrs.get(key) != first.get(key):
        raise shards.ShardError(
          f'{path}: {key} is {events.attrs.get(key)!r} but the first shard '
          f'has {first.get(key)!r}; do not mix shards of different {key}'
        )
    values, present = features_lib.event_features(events, momentum_frame)
    yield values, present, _truth(events)


def _check_not_empty(
  num_events: int, events_with_tracks: int, where: str
) -> None:
  if events_with_tracks == 0:
    raise ValueError(
      f'{where}: none of its {num_events} events has a track; the features '
      'need events with tracks, generate a larger sample'
    )


def load_splits(
  data_dir: str | os.PathLike,
  *,
  seed: int = 0,
  fractions: tuple[float, float, float] = DEFAULT_FRACTIONS,
  num_bins: int = normalizer_lib.DEFAULT_NUM_BINS,
  momentum_frame: str = 'lab',
) -> Splits:
  """Reads a data folder, splits it, fits the normalizer on train.

  Args:
    data_dir: Folder of event shards.
    seed: Seed of the split (split_indices).
    fractions: Fractions of (train, valid, test).
    num_bins: Quantile bins per feature.
    momentum_frame: 'lab' or 'cms': the momentum that ranks the tracks.

  Returns:
    Splits(train, valid, test, normalizer), features on the device.

  Raises:
    ValueError: Bad shards (shards.ShardError), an empty data set, every
      event without tracks, an empty split, or NaN or infinite inputs.
  """
  chunks = list(shard_features(data_dir, momentum_frame))
  values = np.concatenate([c[0] for c in chunks])
  present = np.concatenate([c[1] for c in chunks])
  truth = {k: np.concatenate([c[2][k] for c in chunks]) for k in TRUTH_COLUMNS}
  del chunks
  _check_not_empty(len(values), int(present.any(axis=1).sum()), str(data_dir))

  splits = split_indices(len(values), seed, fractions)
  train = splits['train']
  normalizer = normalizer_lib.QuantileNormalizer.fit(
    values[train], present[train], features_lib.FEATURE_NAMES, num_bins
  )
  datasets = {
    name: _dataset(
      normalizer(values[index], present[index]),
      {k: v[index] for k, v in truth.items()},
      index,
    )
    for name, index in splits.items()
  }
  return Splits(normalizer=normalizer, **datasets)


def prepare_events(
  events: shards.Events,
  normalizer: normalizer_lib.QuantileNormalizer,
  momentum_frame: str = 'lab',
) -> Dataset:
  """Builds and normalizes the features of new events, for evaluation.

  Args:
    events: The events (any number, tracks ragged).
    normalizer: A normalizer fitted for features.FEATURE_NAMES.
    momentum_frame: The frame the tagger was trained with.

  Returns:
    The Dataset, event_index 0..n-1 in the order of `events`.

  Raises:
    normalizer_lib.NormalizerError: The normalizer is for other features.
    ValueError: NaN or infinite track values.
  """
  normalizer.check_features(features_lib.FEATURE_NAMES)
  values, present = features_lib.event_features(events, momentum_frame)
  return _dataset(
    normalizer(values, present), _truth(events), np.arange(events.num_events)
  )


def _check_batch_size(num_events: int, batch_size: int) -> int:
  if batch_size < 1 or batch_size > num_events:
    raise ValueError(
      f'batch_size is {batch_size} for {num_events} events; it must be '
      'between 1 and the number of events'
    )
  return num_events // batch_size


def epoch_permutation(
  num_events: int, key: jax.Array, batch_size: int
) -> jax.Array:
  """Event order of one epoch, shape [steps, batch_size] int32.

  steps = num_events // batch_size; the remainder of the permutation is
  dropped (a different remainder every epoch).
  """
  steps = _check_batch_size(num_events, batch_size)
  order = jax.random.permutation(key, num_events)
  return order[: steps * batch_size].reshape(steps, batch_size)


@jax.jit
def _gather(features, labels, order):
  return features[order], labels[order]


def batch_sharding(mesh: jax.sharding.Mesh) -> jax.sharding.NamedSharding:
  """Sharding of batches [steps, batch, ...] over the mesh axis 'data'.

  The stacked-epoch case of parallel.batch_sharding (batch axis 1).
  """
  return parallel.batch_sharding(mesh, batch_axis=1)


def epoch_batches(
  features: jax.Array,
  labels: jax.Array,
  key: jax.Array,
  batch_size: int,
  sharding: jax.sharding.Sharding | None = None,
) -> tuple[jax.Array, jax.Array]:
  """Shuffles a split on the device into the batches of one epoch.

  Args:
    features: Shape [n, 140].
    labels: Shape [n].
    key: Key of this epoch (e.g. fold_in(shuffle_key, epoch)).
    batch_size: Events per batch.
    sharding: Optional placement of the result, e.g. batch_sharding(mesh).

  Returns:
    (x, y): shapes [steps, batch_size, 140] and [steps, batch_size], with
    steps = n // batch_size.
  """
  order = epoch_permutation(features.shape[0], key, batch_size)
  x, y = _gather(features, labels, order)
  if sharding is not None:
    x, y = jax.device_put((x, y), sharding)
  return x, y


@dataclasses.dataclass(frozen=True)
class FeatureStore:
  """Normalized features of a data folder in a memory-mapped file.

  Attributes:
    path: The store folder.
    features: Shape [events, 140] float32, memory-mapped, read-only.
    truth: TRUTH_COLUMNS, each shape [events].
    splits: 'train' / 'valid' / 'test' -> sorted event indices.
    normalizer: The normalizer fitted on the training split.
  """

  path: pathlib.Path
  features: np.ndarray
  truth: dict[str, np.ndarray]
  splits: dict[str, np.ndarray]
  normalizer: normalizer_lib.QuantileNormalizer

  def dataset(self, split: str) -> Dataset:
    """Reads one split into memory, features on the device."""
    index = self.splits[split]
    return _dataset(
      self.features[index], {k: v[index] for k, v in self.truth.items()}, index
    )

  def epoch_blocks(
    self,
    split: str,
    key: jax.Array,
    batch_size: int,
    steps_per_block: int = 100,
    sharding: jax.sharding.Sharding | None = None,
    prefetch: int = 2,
  ) -> Iterator[tuple[jax.Array, jax.Array]]:
    """Streams the batches of one epoch from disk, a block of steps at once.

    The blocks, joined along the steps axis, equal epoch_batches on the
    in-memory split for the same key.

    Args:
      split: 'train', 'valid' or 'test'.
      key: Key of this epoch.
      batch_size: Events per batch.
      steps_per_block: Batches per block (the last block may be shorter).
      sharding: Optional placement of each block, e.g. batch_sharding(mesh).
      prefetch: Blocks placed on the device ahead of the one in use.

    Yields:
      (x, y): shapes [steps, batch_size, 140] and [steps, batch_size].
    """
    index = self.splits[split]
    order = np.asarray(epoch_permutation(len(index), key, batch_size))
    rows = index[order]
    labels = labels_from_q(self.truth['q_tag'])
    in_flight = collections.deque()
    for start in range(0, len(rows), steps_per_block):
      block = rows[start : start + steps_per_block]
      in_flight.append(
        jax.device_put((self.features[block], labels[block]), sharding)
      )
      if len(in_flight) > prefetch:
        yield in_flight.popleft()
    while in_flight:
      yield in_flight.popleft()


def build_feature_store(
  data_dir: str | os.PathLike,
  store_dir: str | os.PathLike,
  *,
  seed: int = 0,
  fractions: tuple[float, float, float] = DEFAULT_FRACTIONS,
  num_bins: int = normalizer_lib.DEFAULT_NUM_BINS,
  momentum_frame: str = 'lab',
) -> FeatureStore:
  """Builds the streaming store of a data folder; see the module docstring.

  The split and the normalizer equal those of load_splits with the same
  arguments. The store folder gets features.npy (normalized, [events, 140]
  float32), truth.npz, normalizer.npz and store.json (written last: a store
  without it is incomplete).

  Raises:
    ValueError: As load_splits.
  """
  store_dir = pathlib.Path(store_dir)
  store_dir.mkdir(parents=True, exist_ok=True)
  (store_dir / 'store.json').unlink(missing_ok=True)

  # Raw features shard by shard onto disk.
  raw_files, counts, truth_chunks = [], [], []
  events_with_tracks = 0
  for i, (values, present, truth) in enumerate(
    shard_features(data_dir, momentum_frame)
  ):
    raw = (
      store_dir / f'raw_values_{i:05d}.npy',
      store_dir / f'raw_present_{i:05d}.npy',
    )
    np.save(raw[0], values)
    np.save(raw[1], present)
    raw_files.append(raw)
    counts.append(len(values))
    truth_chunks.append(truth)
    events_with_tracks += int(present.any(axis=1).sum())
  truth = {
    k: np.concatenate([t[k] for t in truth_chunks]) for k in TRUTH_COLUMNS
  }
  offsets = shards.offsets_from_counts(np.asarray(counts))
  num_events = int(offsets[-1])
  _check_not_empty(num_events, events_with_tracks, str(data_dir))
  splits = split_indices(num_events, seed, fractions)

  # Fit one track slot (14 columns) at a time over the training rows.
  train = splits['train']
  shard_of_row = np.searchsorted(offsets, train, side='right') - 1
  slot = len(features_lib.TRACK_FEATURES)
  edges = []
  for first in range(0, features_lib.NUM_FEATURES, slot):
    columns = slice(first, first + slot)
    parts_v, parts_p = [], []
    for i, raw in enumerate(raw_files):
      rows = train[shard_of_row == i] - offsets[i]
      parts_v.append(np.load(raw[0], mmap_mode='r')[rows, columns])
      parts_p.append(np.load(raw[1], mmap_mode='r')[rows, columns])
    fitted = normalizer_lib.QuantileNormalizer.fit(
      np.concatenate(parts_v),
      np.concatenate(parts_p),
      features_lib.FEATURE_NAMES[columns],
      num_bins,
    )
    edges.append(fitted.edges)
  normalizer = normalizer_lib.QuantileNormalizer(
    features_lib.FEATURE_NAMES, np.concatenate(edges)
  )

  # Normalize shard by shard into one memory-mapped file.
  features = np.lib.format.open_memmap(
    store_dir / 'features.npy',
    mode='w+',
    dtype=np.float32,
    shape=(num_events, features_lib.NUM_FEATURES),
  )
  for i, raw in enumerate(raw_files):
    normalized = normalizer(np.load(raw[0]), np.load(raw[1]))
    features[offsets[i] : offsets[i + 1]] = np.asarray(normalized)
    for path in raw:
      path.unlink()
  features.flush()
  del features

  np.savez(store_dir / 'truth.npz', **truth)
  normalizer.save(store_dir / 'normalizer.npz')
  writers.write_json(
    store_dir / 'store.json',
    {
      'format': STORE_FORMAT,
      'format_version': STORE_VERSION,
      'data_dir': str(data_dir),
      'num_events': num_events,
      'seed': seed,
      'fractions': list(fractions),
      'num_bins': num_bins,
      'momentum_frame': momentum_frame,
      'feature_names': list(features_lib.FEATURE_NAMES),
    },
  )
  return open_feature_store(store_dir)


def open_feature_store(store_dir: str | os.PathLike) -> FeatureStore:
  """Opens a store written by build_feature_store.

  Raises:
    ValueError: The folder is not a complete store of this format or its
      feature list differs from features.FEATURE_NAMES.
  """
  store_dir = pathlib.Path(store_dir)
  meta_path = store_dir / 'store.json'
  if not meta_path.is_file():
    raise ValueError(
      f'{store_dir}: no store.json, not a complete feature store; build it '
      'with pipeline.build_feature_store'
    )
  meta = json.loads(meta_path.read_text())
  if (meta.get('format'), meta.get('format_version')) != (
    STORE_FORMAT,
    STORE_VERSION,
  ):
    raise ValueError(
      f'{store_dir}: store format {meta.get("format")!r} version '
      f'{meta.get("format_version")}, expected {STORE_FORMAT!r} version '
      f'{STORE_VERSION}; rebuild the store'
    )
  normalizer = normalizer_lib.QuantileNormalizer.load(
    store_dir / 'normalizer.npz', features_lib.FEATURE_NAMES
  )
  with np.load(store_dir / 'truth.npz') as f:
    truth = {k: f[k] for k in TRUTH_COLUMNS}
  return FeatureStore(
    path=store_dir,
    features=np.load(store_dir / 'features.npy', mmap_mode='r'),
    truth=truth,
    splits=split_indices(
      meta['num_events'], meta['seed'], tuple(meta['fractions'])
    ),
    normalizer=normalizer,
  )
