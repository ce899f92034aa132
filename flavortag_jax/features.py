"""The 140 low-level track features of an event, as pure JAX functions.

Per event, the 5 positive and the 5 negative tracks of highest momentum, each
group in descending momentum, give 14 values each (FEATURE_NAMES holds the
order). Tracks arrive padded to a common length with a mask (`pad_tracks`),
so the feature builder is one vectorized program over all events.
"""

import jax
import jax.numpy as jnp
import numpy as np

from flavortag_jax import physics, shards

# Tracks kept per charge.
TRACKS_PER_CHARGE = 5

# Per-track features in the order of the feature vector.
TRACK_FEATURES = (
  'p_star',
  'cos_theta_star',
  'phi_star',
  'electronID',
  'pionID',
  'muonID',
  'kaonID',
  'protonID',
  'nPXDHits',
  'nSVDHits',
  'nCDCHits',
  'dr',
  'dz',
  'pValue',
)

# Charge groups in the order of the feature vector: name prefix and charge.
CHARGE_GROUPS = (('pos', 1), ('neg', -1))

# The 140 feature names: positive rank 1..5, then negative rank 1..5.
FEATURE_NAMES = tuple(
  f'{prefix}{rank}_{name}'
  for prefix, _ in CHARGE_GROUPS
  for rank in range(1, TRACKS_PER_CHARGE + 1)
  for name in TRACK_FEATURES
)
NUM_FEATURES = len(FEATURE_NAMES)

# Columns of the padded track array, in order: lab momentum and charge, then
# the reconstructed quantities that are copied into the features unchanged.
TRACK_INPUT_COLUMNS = ('px', 'py', 'pz', 'charge', *TRACK_FEATURES[3:])
_COPIED = slice(4, len(TRACK_INPUT_COLUMNS))

MOMENTUM_FRAMES = ('lab', 'cms')

# Events per call of the compiled feature builder in `event_features`, and
# the multiple its padded track axis is rounded up to.
EVENT_CHUNK = 16384
TRACK_AXIS_MULTIPLE = 8


def _check_frame(momentum_frame: str) -> None:
  if momentum_frame not in MOMENTUM_FRAMES:
    raise ValueError(
      f'momentum_frame is {momentum_frame!r}, expected one of {MOMENTUM_FRAMES}'
    )


def pad_tracks(
  events: shards.Events, max_tracks: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
  """Turns the ragged track columns of `events` into a padded array.

  Args:
    events: Events with ragged tracks.
    max_tracks: Length of the track axis; by default the largest number of
      tracks in an event (at least 1).

  Returns:
    (tracks, mask): tracks of shape [events, max_tracks, 15] float32 with the
    columns TRACK_INPUT_COLUMNS, zero where padded; mask of shape
    [events, max_tracks] bool, True for real tracks.

  Raises:
    ValueError: max_tracks is smaller than an event's track count, a track
      column holds NaN or infinite values, or a charge is not +1 or -1.
  """
  return _pad_range(events, 0, events.num_events, max_tracks)


def _pad_range(
  events: shards.Events,
  start: int,
  stop: int,
  max_tracks: int | None,
  num_rows: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
  """pad_tracks for events start..stop-1, in num_rows rows (extra: empty)."""
  offsets = events.track_offsets[start : stop + 1]
  counts = np.diff(offsets)
  longest = int(counts.max(initial=0))
  if max_tracks is None:
    max_tracks = max(longest, 1)
  if max_tracks < longest:
    raise ValueError(
      f'max_tracks={max_tracks} but an event has {longest} tracks; pass '
      'max_tracks=None or a value of at least the largest track count'
    )

  first, last = int(offsets[0]), int(offsets[-1])
  columns = np.stack(
    [
      np.asarray(events.tracks[c][first:last], np.float32)
      for c in TRACK_INPUT_COLUMNS
    ],
    axis=-1,
  )
  event = np.repeat(np.arange(stop - start), counts)
  bad = ~np.isfinite(columns)
  if bad.any():
    track, column = np.argwhere(bad)[0]
    raise ValueError(
      f'{int(bad.sum())} NaN or infinite track values, for example column '
      f'{TRACK_INPUT_COLUMNS[column]!r} of track {first + track} (event '
      f'{start + event[track]}); the features need finite inputs, check the '
      'generator or detector output'
    )
  charge = columns[:, TRACK_INPUT_COLUMNS.index('charge')]
  if not np.isin(charge, (-1.0, 1.0)).all():
    raise ValueError(
      f'track charges must be +1 or -1, found {np.unique(charge).tolist()}'
    )

  # Slot of each track inside its event: its position after the event start.
  slot = np.arange(last - first) - (offsets[event] - first)
  num_rows = stop - start if num_rows is None else num_rows
  tracks = np.zeros((num_rows, max_tracks, columns.shape[1]), np.float32)
  mask = np.zeros((num_rows, max_tracks), bool)
  tracks[event, slot] = columns
  mask[event, slot] = True
  return tracks, mask


def _cms_kinematics(
  px: jax.Array, py: jax.Array, pz: jax.Array
) -> tuple[jax.Array, jax.Array, jax.Array]:
  """p* (GeV), cos(theta*) and phi* of tracks from their lab momentum, GeV.

  The energy uses the charged pion mass; cos(theta*) of a track at rest in
  the CMS is 0.
  """
  energy = jnp.sqrt(px**2 + py**2 + pz**2 + physics.PION_MASS**2)
  px_cms, py_cms, pz_cms, _ = physics.boost_to_cms(px, py, pz, energy)
  p_star = jnp.sqrt(px_cms**2 + py_cms**2 + pz_cms**2)
  safe = jnp.where(p_star > 0, p_star, 1.0)
  cos_theta_star = jnp.where(p_star > 0, pz_cms / safe, 0.0)
  return p_star, cos_theta_star, jnp.arctan2(py_cms, px_cms)


def build_features(
  tracks: jax.Array, mask: jax.Array, momentum_frame: str = 'lab'
) -> tuple[jax.Array, jax.Array]:
  """Builds the 140 features of each event from its padded tracks.

  Within each charge the tracks are ranked by momentum, the lab momentum by
  default (as the experiment does) or p* with momentum_frame='cms'; equal
  momenta keep the order of the tracks in the event. Absent tracks (fewer
  than 5 of a charge) give padding: value 0 and present False.

  NOTE: the particle species of a track is unknown, so its CMS energy uses
  the charged pion mass, as the experiment does for p* of charged tracks.
  For heavier particles p* is then off: for a 1 GeV kaon by 1 to 4 %
  depending on its direction, for protons more; electrons and muons are
  barely affected.

  Args:
    tracks: Shape [events, max_tracks, 15], columns TRACK_INPUT_COLUMNS.
    mask: Shape [events, max_tracks] bool, True for real tracks.
    momentum_frame: 'lab' or 'cms': the momentum that ranks the tracks.

  Returns:
    (values, present): values of shape [events, 140] float32 in the order of
    FEATURE_NAMES; present of shape [events, 140] bool, False for padding.
  """
  _check_frame(momentum_frame)
  tracks = jnp.asarray(tracks, jnp.float32)
  mask = jnp.asarray(mask, bool)
  if tracks.shape[1] < TRACKS_PER_CHARGE:
    pad = TRACKS_PER_CHARGE - tracks.shape[1]
    tracks = jnp.pad(tracks, ((0, 0), (0, pad), (0, 0)))
    mask = jnp.pad(mask, ((0, 0), (0, pad)))

  # Rank within each charge; absent tracks and the other charge sort last.
  px, py, pz, charge = (tracks[..., i] for i in range(4))
  if momentum_frame == 'lab':
    momentum = jnp.sqrt(px**2 + py**2 + pz**2)
  else:
    momentum = _cms_kinematics(px, py, pz)[0]
  selected = jnp.stack(
    [mask & (charge == sign) for _, sign in CHARGE_GROUPS], axis=1
  )  # [events, 2, max_tracks]
  key = jnp.where(selected, momentum[:, None], -jnp.inf)
  _, order = jax.lax.top_k(key, TRACKS_PER_CHARGE)  # [events, 2, 5]
  present = jnp.take_along_axis(selected, order, 2)
  num_slots = len(CHARGE_GROUPS) * TRACKS_PER_CHARGE
  order = order.reshape(-1, num_slots)  # [events, 10]
  present = present.reshape(-1, num_slots)

  # Features of the 10 chosen tracks only.
  chosen = jnp.take_along_axis(tracks, order[..., None], 1)  # [events, 10, 15]
  p_star, cos_theta_star, phi_star = _cms_kinematics(
    chosen[..., 0], chosen[..., 1], chosen[..., 2]
  )
  values = jnp.concatenate(
    [
      jnp.stack([p_star, cos_theta_star, phi_star], axis=-1),
      chosen[..., _COPIED],
    ],
    axis=-1,
  )  # [events, 10, 14]

  present = jnp.broadcast_to(present[..., None], values.shape)
  values = jnp.where(present, values, 0.0)
  num_events = values.shape[0]
  return (
    values.reshape(num_events, NUM_FEATURES),
    present.reshape(num_events, NUM_FEATURES),
  )


build_features_jit = jax.jit(build_features, static_argnames='momentum_frame')


def event_features(
  events: shards.Events,
  momentum_frame: str = 'lab',
  max_tracks: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
  """Builds the features of every event, in chunks of EVENT_CHUNK events.

  Every chunk is padded to the same shape, so the builder compiles once.

  Args:
    events: Events with ragged tracks.
    momentum_frame: 'lab' or 'cms': the momentum that ranks the tracks.
    max_tracks: Length of the padded track axis; by default the largest
      track count in `events` rounded up to a multiple of
      TRACK_AXIS_MULTIPLE, so that data folders whose shards differ a little
      compile the builder once or twice, not once per shard.

  Returns:
    (values, present) as numpy arrays, shapes [events, 140] float32 and
    [events, 140] bool.
  """
  _check_frame(momentum_frame)
  if max_tracks is None:
    longest = int(np.diff(events.track_offsets).max(initial=0))
    max_tracks = TRACK_AXIS_MULTIPLE * max(
      -(-longest // TRACK_AXIS_MULTIPLE), 1
    )
  chunk = min(EVENT_CHUNK, max(events.num_events, 1))
  values = np.zeros((events.num_events, NUM_FEATURES), np.float32)
  present = np.zeros((events.num_events, NUM_FEATURES), bool)

  # The next chunk is padded on the host while the last one is computed.
  pending = None
  for start in range(0, events.num_events, chunk):
    stop = min(start + chunk, events.num_events)
    tracks, mask = _pad_range(events, start, stop, max_tracks, chunk)
    result = build_features_jit(tracks, mask, momentum_frame=momentum_frame)
    if pending is not None:
      _store(values, present, *pending)
    pending = (start, stop, result)
  if pending is not None:
    _store(values, present, *pending)
  return values, present


def _store(values, present, start, stop, result):
  values[start:stop] = np.asarray(result[0])[: stop - start]
  present[start:stop] = np.asarray(result[1])[: stop - start]
