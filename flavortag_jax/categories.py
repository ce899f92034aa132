"""The 13 flavor signatures of the category-based tagger and their variables.

Each category names a kind of tag-side track that carries the flavor of the
tag B (a primary lepton, a kaon from b -> c -> s, a slow pion from a D*...),
the input variables its boosted decision tree sees for every candidate track,
the truth target it learns (is this candidate the flavor-carrying particle of
the decay chain) and the flavor sign that turns a target's charge into the tag
B flavor q (+1 for B0, -1 for anti-B0).

Flavor signs, from the quark content of B0 = (d b-bar), anti-B0 = (d-bar b):

| category | target | chain for a B0 | sign |
| --- | --- | --- | --- |
| Electron, Muon, KinLepton | primary l | b-bar -> c-bar W+ -> l+ nu | +1 |
| Intermediate* leptons | secondary l | c-bar -> s-bar W- -> l- nu-bar | -1 |
| Kaon | K (b -> c -> s) | b-bar -> c-bar -> s-bar: K+ (u s-bar) | +1 |
| SlowPion | pi from D* | D*- (c-bar d) -> anti-D0 pi- | -1 |
| FastHadron | pi, K from W | b-bar -> c-bar W+, W+ -> u d-bar: pi+ | +1 |
| Lambda | p from Lambda | c-bar -> s-bar: anti-Lambda -> p-bar pi+ | -1 |
| FastSlowCorrelated | fast track | pi+ of W+ with slow pi- of D*- | +1 |
| MaximumPstar | highest-p* track | primary l+ or fast pi+ | +1 |
| KaonPion | kaon | K+ with slow pi- of D*- | +1 |

q = sign * charge of a target candidate.

Every track of an event is a candidate of every category, except for
MaximumPstar (only the track of highest p* in the event) and the two pair
categories (a track with a slow-pion partner of opposite charge).

NOTE: Variables of the experiment that our simulation cannot provide are
left out or replaced: there are no calorimeter clusters (no E/p for electron
ID beyond electronID, no neutral energy in the recoil and W-hemisphere
variables), no track helices for vertex fits (K_S and Lambda candidates use
the daughters' impact parameters instead of a fitted flight distance), and
the signal B is invisible (the tag B is taken at rest in the CMS; the thrust
axis is that of all tracks of the event, which are the rest of event). See
`recoil_variables`, `v0_variables` and `add_partner_variables`.

Momenta in GeV, lengths in cm. CMS quantities come from
physics.boost_to_cms with the mass hypothesis of the category's particle
(electron, muon, kaon, proton; pion for the rest). All functions work on the
flat track arrays of shards.Events with no loop over events.
"""

import dataclasses

import numpy as np

from flavortag_jax import physics, shards

# Mass hypotheses of the charged tracks, GeV, by the short names that suffix
# the per-hypothesis variables (p_star_e, ..., p_star_p).
PARTICLE_MASS = {
  'e': physics.ELECTRON_MASS,
  'mu': physics.MUON_MASS,
  'pi': physics.PION_MASS,
  'K': physics.KAON_MASS,
  'p': physics.PROTON_MASS,
}

# V0 candidate selection (our choice): both daughters displaced from the beam
# spot by more than V0_MIN_DR (K_S: c tau = 2.68 cm, Lambda: 7.9 cm, while
# tracks from the B and charm decays stay within a few hundred um), and the
# pair mass within a window of a few times the mass resolution (about 3 MeV
# for K_S -> pi pi, 1 MeV for Lambda -> p pi at sigma(pT)/pT ~ 0.3 %).
V0_MIN_DR = 0.05
K_SHORT_MASS_WINDOW = 0.015
LAMBDA_MASS_WINDOW = 0.006

# Events are processed in chunks of this many events to bound the memory of
# the track pairs (sum over events of n_tracks^2).
CHUNK_EVENTS = 20000


@dataclasses.dataclass(frozen=True)
class Category:
  """One flavor signature.

  Attributes:
    name: Category name, as in the Belle II flavor tagger.
    flavor_sign: q = flavor_sign * charge of a target candidate.
    inputs: Names of the candidate input variables (keys of the dict made by
      `track_variables` and `add_partner_variables`).
    num_combined: Number of most probable candidates combined into the
      category output (1: the best candidate; 3 for Kaon and Lambda).
    candidates: 'all' tracks, 'max_p_star' (the highest-p* track) or
      'slow_partner' (tracks with an opposite-charge slow-pion partner).
  """

  name: str
  flavor_sign: int
  inputs: tuple[str, ...]
  num_combined: int = 1
  candidates: str = 'all'


_KINEMATICS = ('pt', 'p', 'cos_theta')
_RECOIL = ('m2_recoil', 'p_star_miss', 'cos_theta_miss', 'e_w90')
_LEPTON_TRACK = ('pValue', 'cos_thrust', 'dr')

_ELECTRON = ('p_star_e', *_KINEMATICS, 'electronID', *_LEPTON_TRACK, *_RECOIL)
_MUON = ('p_star_mu', *_KINEMATICS, 'muonID', *_LEPTON_TRACK, *_RECOIL)
_KIN_LEPTON = ('p_star_pi', *_KINEMATICS, *_LEPTON_TRACK, *_RECOIL)

CATEGORIES = (
  Category('Electron', +1, _ELECTRON),
  Category('IntermediateElectron', -1, _ELECTRON),
  Category('Muon', +1, _MUON),
  Category('IntermediateMuon', -1, _MUON),
  Category('KinLepton', +1, _KIN_LEPTON),
  Category('IntermediateKinLepton', -1, _KIN_LEPTON),
  Category(
    'Kaon',
    +1,
    (
      'p_star_K',
      *_KINEMATICS,
      'kaonID',
      'pionID',
      'pValue',
      'cos_thrust',
      'dr',
      'dz',
      'num_k_short',
      *_RECOIL,
    ),
    num_combined=3,
  ),
  Category(
    'SlowPion',
    -1,
    (
      'p_star_pi',
      *_KINEMATICS,
      'pionID',
      'electronID',
      'kaonID',
      'pValue',
      'cos_thrust',
      'dr',
      'dz',
      'nSVDHits',
      'nCDCHits',
    ),
  ),
  Category(
    'FastHadron',
    +1,
    (
      'p_star_pi',
      *_KINEMATICS,
      'pionID',
      'kaonID',
      'electronID',
      'muonID',
      'pValue',
      'cos_thrust',
      'dr',
      'dz',
      *_RECOIL,
    ),
  ),
  Category(
    'Lambda',
    -1,
    (
      'p_star_p',
      'p',
      'cos_theta',
      'protonID',
      'pionID',
      'pValue',
      'dr',
      'dz',
      'lambda_mass',
      'lambda_p_star',
      'lambda_pion_dr',
      'num_lambda',
      'num_k_short',
    ),
    num_combined=3,
  ),
  Category(
    'FastSlowCorrelated',
    +1,
    (
      'p_star_pi',
      'pt',
      'cos_thrust',
      'pionID',
      'kaonID',
      'slow_p_star',
      'slow_cos_thrust',
      'slow_pionID',
      'cos_slow',
    ),
    candidates='slow_partner',
  ),
  Category(
    'MaximumPstar',
    +1,
    ('p_star_pi', *_KINEMATICS, 'cos_thrust'),
    candidates='max_p_star',
  ),
  Category(
    'KaonPion',
    +1,
    (
      'p_star_K',
      'kaonID',
      'pionID',
      'cos_thrust',
      'slow_p_star',
      'slow_pionID',
      'slow_cos_thrust',
      'cos_slow',
    ),
    candidates='slow_partner',
  ),
)
CATEGORY_NAMES = tuple(c.name for c in CATEGORIES)
CATEGORY_BY_NAME = {c.name: c for c in CATEGORIES}

# Reconstructed track columns the variables are built from.
REQUIRED_TRACK_COLUMNS = (
  'px',
  'py',
  'pz',
  'charge',
  'dr',
  'dz',
  'electronID',
  'muonID',
  'pionID',
  'kaonID',
  'protonID',
  'nPXDHits',
  'nSVDHits',
  'nCDCHits',
  'pValue',
)
TRUTH_TRACK_COLUMNS = (
  'mc_pdg',
  'mc_mother_pdg',
  'mc_category',
  'mc_is_background',
)


def check_tracks(events: shards.Events, columns=REQUIRED_TRACK_COLUMNS):
  """Checks that `events` carry finite track `columns`.

  Raises:
    ValueError: A column is missing or holds NaN or inf.
  """
  missing = [c for c in columns if c not in events.tracks]
  if missing:
    raise ValueError(
      f'events lack the track columns {missing} that the category tagger '
      f'needs; expected the shards.TRACK_COLUMNS schema'
    )
  for name in columns:
    values = events.tracks[name]
    if values.dtype.kind == 'f' and not np.all(np.isfinite(values)):
      bad = int(np.sum(~np.isfinite(values)))
      raise ValueError(
        f'track column {name!r} holds {bad} NaN or inf values; the events '
        'are corrupt: regenerate or drop them'
      )


def event_pairs(track_offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Returns every ordered pair of different tracks of the same event.

  Args:
    track_offsets: Shape [num_events + 1], as shards.Events.track_offsets.

  Returns:
    (first, second) track indices, each shape [sum_e n_e (n_e - 1)].
  """
  counts = np.diff(track_offsets)
  per_track = np.repeat(counts, counts)
  num_tracks = int(track_offsets[-1])
  first = np.repeat(np.arange(num_tracks), per_track)
  start = np.repeat(np.repeat(track_offsets[:-1], counts), per_track)
  pair_offsets = np.zeros(num_tracks + 1, np.int64)
  np.cumsum(per_track, out=pair_offsets[1:])
  within = np.arange(pair_offsets[-1]) - np.repeat(pair_offsets[:-1], per_track)
  second = start + within
  keep = first != second
  return first[keep], second[keep]


def segment_rank(
  score: np.ndarray, event_index: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
  """Orders tracks by descending score within each event.

  Args:
    score: Shape [n]; NaN scores rank last.
    event_index: Shape [n], the event of each entry.

  Returns:
    (order, rank): `order` [n] lists entries event by event, best first;
    `rank` [n] is the position of order[k] within its event (0 = best).
  """
  key = np.where(np.isnan(score), np.inf, -score)
  order = np.lexsort((key, event_index))
  sorted_events = event_index[order]
  first = np.ones(len(order), bool)
  first[1:] = sorted_events[1:] != sorted_events[:-1]
  group_start = np.maximum.accumulate(np.where(first, np.arange(len(order)), 0))
  return order, np.arange(len(order)) - group_start


def four_momentum_cms(
  px: np.ndarray, py: np.ndarray, pz: np.ndarray, mass: float
) -> np.ndarray:
  """Returns CMS four-momenta (px*, py*, pz*, E*) of lab momenta, shape [n, 4].

  Args:
    px, py, pz: Lab momentum components, GeV, shape [n].
    mass: Mass hypothesis, GeV.
  """
  energy = np.sqrt(px**2 + py**2 + pz**2 + mass**2)
  return np.stack(physics.boost_to_cms(px, py, pz, energy), axis=-1)


def thrust_axis(
  p: np.ndarray,
  event_index: np.ndarray,
  num_events: int,
  num_seeds: int = 3,
  num_iterations: int = 12,
) -> np.ndarray:
  """Returns the thrust axis of each event's tracks.

  The thrust axis n maximizes T = sum_i |p_i . n| / sum_i |p_i|. For the
  optimal n the signs s_i = sign(p_i . n) make n parallel to sum_i s_i p_i;
  iterating n <- sum_i s_i p_i from a seed raises T at each step and stops
  at a local maximum. Seeds are the directions of the num_seeds tracks of
  highest momentum; the best result per event is kept.

  Args:
    p: Track momenta, shape [n, 3].
    event_index: Event of each track, shape [n].
    num_events: Number of events E.
    num_seeds: Number of seed directions.
    num_iterations: Iterations per seed.

  Returns:
    Unit axes, shape [E, 3]; zero for an event without tracks. The sign of
    an axis is arbitrary.
  """
  magnitude = np.linalg.norm(p, axis=1)
  order, rank = segment_rank(magnitude, event_index)
  counts = np.bincount(event_index, minlength=num_events)
  best_axis = np.zeros((num_events, 3))
  best_thrust = np.full(num_events, -1.0)
  for seed in range(num_seeds):
    # Seed: the track of rank `seed`, or of the highest rank available.
    chosen = rank == np.minimum(seed, counts[event_index[order]] - 1)
    axis = np.zeros((num_events, 3))
    axis[event_index[order[chosen]]] = p[order[chosen]]
    for _ in range(num_iterations):
      sign = np.where(np.sum(p * axis[event_index], axis=1) >= 0, 1.0, -1.0)
      axis = _segment_sum(sign[:, None] * p, event_index, num_events)
    norm = np.linalg.norm(axis, axis=1)
    axis = axis / np.where(norm > 0, norm, 1.0)[:, None]
    projection = np.abs(np.sum(p * axis[event_index], axis=1))
    thrust = _segment_sum(projection, event_index, num_events)
    better = thrust > best_thrust
    best_axis[better] = axis[better]
    best_thrust[better] = thrust[better]
  return best_axis


def _segment_sum(values, event_index, num_events):
  """Sums `values` ([n] or [n, k]) per event: shape [E] or [E, k]."""
  if values.ndim == 1:
    return np.bincount(event_index, weights=values, minlength=num_events)
  return np.stack(
    [
      np.bincount(event_index, weights=values[:, k], minlength=num_events)
      for k in range(values.shape[1])
    ],
    axis=1,
  )


def _cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
  """Cosine of the angle between rows of a and b ([n, 3]); NaN if zero."""
  norm = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
  with np.errstate(invalid='ignore', divide='ignore'):
    return np.where(norm > 0, np.sum(a * b, axis=1) / norm, np.nan)


def recoil_variables(
  p4: np.ndarray,
  event_index: np.ndarray,
  num_events: int,
  pairs: tuple[np.ndarray, np.ndarray],
) -> dict[str, np.ndarray]:
  """Returns the variables of the system recoiling against each candidate.

  For candidate track c, X is the system of all other tracks of its event.
  With the tag B at rest in the CMS (see NOTE):
    m2_recoil: M^2(X) = E_X^2 - |p_X|^2, GeV^2 (near m_D(*)^2 when c is a
      primary lepton and the charm system is fully seen).
    p_star_miss: |p_miss| with p_miss = -(sum of all track momenta), GeV.
    cos_theta_miss: Cosine of the angle between p_c and p_miss.
    e_w90: Energy of the tracks of X in the hemisphere of the virtual W,
      whose direction is p_W = -p_X (the recoil of X), GeV.

  NOTE: In the experiment the tag B momentum comes from the reconstructed
  signal B (p_tag = -p_sig) and neutral clusters enter X. Our training
  sample has an invisible signal B (B -> nu nu-bar) and only tracks, so the
  tag B is taken at rest in the CMS (its true p* is 0.34 GeV) and X holds
  charged tracks only.

  Args:
    p4: CMS four-momenta (px, py, pz, E) of the tracks, shape [n, 4].
    event_index: Event of each track, shape [n].
    num_events: Number of events.
    pairs: Ordered track pairs of the same event, from `event_pairs`.

  Returns:
    Dict of arrays of shape [n].
  """
  total = _segment_sum(p4, event_index, num_events)[event_index]
  x = total - p4
  m2_recoil = x[:, 3] ** 2 - np.sum(x[:, :3] ** 2, axis=1)
  p_miss = -total[:, :3]
  w_direction = -x[:, :3]
  first, second = pairs
  in_w = np.sum(p4[second, :3] * w_direction[first], axis=1) > 0
  e_w90 = np.bincount(
    first, weights=np.where(in_w, p4[second, 3], 0.0), minlength=len(p4)
  )
  return {
    'm2_recoil': m2_recoil,
    'p_star_miss': np.linalg.norm(p_miss, axis=1),
    'cos_theta_miss': _cosine(p4[:, :3], p_miss),
    'e_w90': e_w90,
  }


def _pair_mass(p4_a: np.ndarray, p4_b: np.ndarray) -> np.ndarray:
  total = p4_a + p4_b
  return np.sqrt(
    np.maximum(total[:, 3] ** 2 - np.sum(total[:, :3] ** 2, axis=1), 0.0)
  )


def v0_variables(
  tracks: dict[str, np.ndarray],
  p4_pion: np.ndarray,
  p4_proton: np.ndarray,
  event_index: np.ndarray,
  num_events: int,
  pairs: tuple[np.ndarray, np.ndarray],
) -> dict[str, np.ndarray]:
  """Returns K_S and Lambda candidate variables per track.

  A V0 candidate is a pair of opposite-charge tracks, both with |dr| >
  V0_MIN_DR (dr is signed), whose mass (pi pi for K_S, p pi for Lambda) is
  within the window around the V0 mass.

  NOTE: The experiment fits a common vertex and uses the flight distance and
  the angle between the V0 momentum and its flight direction. The simulation
  provides no track helices to fit, so the displacement of both daughters
  (dr) stands in for the vertex and the best pair is chosen by mass alone.

  Args:
    tracks: Track columns (charge, dr), shape [n] each.
    p4_pion: CMS four-momenta under the pion hypothesis, shape [n, 4].
    p4_proton: CMS four-momenta under the proton hypothesis, shape [n, 4].
    event_index: Event of each track, shape [n].
    num_events: Number of events.
    pairs: Ordered track pairs of the same event, from `event_pairs`.

  Returns:
    Dict of arrays of shape [n]: num_k_short and num_lambda (event counts,
    repeated per track), and for the track as a proton candidate the
    best p pi pair's lambda_mass (GeV), lambda_p_star (GeV) and
    lambda_pion_dr (cm), NaN where the track has no displaced partner.
  """
  n = len(event_index)
  first, second = pairs
  displaced = np.abs(tracks['dr']) > V0_MIN_DR
  usable = (
    (tracks['charge'][first] != tracks['charge'][second])
    & displaced[first]
    & displaced[second]
  )
  first, second = first[usable], second[usable]

  # K_S: count each unordered pair once.
  unordered = first < second
  m_pi_pi = _pair_mass(p4_pion[first], p4_pion[second])
  is_k_short = unordered & (
    np.abs(m_pi_pi - physics.K_SHORT_MASS) < K_SHORT_MASS_WINDOW
  )
  num_k_short = np.bincount(
    event_index[first[is_k_short]], minlength=num_events
  )

  # Lambda: `first` as the proton, `second` as the pion.
  m_p_pi = _pair_mass(p4_proton[first], p4_pion[second])
  distance = np.abs(m_p_pi - physics.LAMBDA_MASS)
  is_lambda = distance < LAMBDA_MASS_WINDOW
  # A pair counts once even if both mass assignments fall in the window.
  lambda_pairs = np.unique(
    np.minimum(first, second)[is_lambda] * n
    + np.maximum(first, second)[is_lambda]
  )
  num_lambda = np.bincount(
    event_index[lambda_pairs // max(n, 1)], minlength=num_events
  )

  order, rank = segment_rank(-distance, first)
  best = order[rank == 0]
  proton = first[best]
  lambda_mass = np.full(n, np.nan)
  lambda_p_star = np.full(n, np.nan)
  lambda_pion_dr = np.full(n, np.nan)
  lambda_mass[proton] = m_p_pi[best]
  pair_p = p4_proton[proton, :3] + p4_pion[second[best], :3]
  lambda_p_star[proton] = np.linalg.norm(pair_p, axis=1)
  lambda_pion_dr[proton] = tracks['dr'][second[best]]
  return {
    'num_k_short': num_k_short[event_index].astype(np.float64),
    'num_lambda': num_lambda[event_index].astype(np.float64),
    'lambda_mass': lambda_mass,
    'lambda_p_star': lambda_p_star,
    'lambda_pion_dr': lambda_pion_dr,
  }


def _chunk_variables(events: shards.Events) -> dict[str, np.ndarray]:
  """`track_variables` of one chunk of events."""
  tracks = {k: np.asarray(v, np.float64) for k, v in events.tracks.items()}
  event_index = events.event_index()
  num_events = events.num_events
  px, py, pz = tracks['px'], tracks['py'], tracks['pz']
  p4 = {
    name: four_momentum_cms(px, py, pz, mass)
    for name, mass in PARTICLE_MASS.items()
  }
  pairs = event_pairs(events.track_offsets)

  p_lab = np.sqrt(px**2 + py**2 + pz**2)
  pion = p4['pi']
  axis = thrust_axis(pion[:, :3], event_index, num_events)
  p_star_pi = np.linalg.norm(pion[:, :3], axis=1)
  order, rank = segment_rank(p_star_pi, event_index)
  is_max_p_star = np.zeros(len(px), bool)
  is_max_p_star[order[rank == 0]] = True

  variables = {
    'p': p_lab,
    'pt': np.hypot(px, py),
    'cos_theta': np.divide(pz, p_lab, out=np.zeros_like(pz), where=p_lab > 0),
    'cos_thrust': np.abs(_cosine(pion[:, :3], axis[event_index])),
    'is_max_p_star': is_max_p_star,
    'px_star': pion[:, 0],
    'py_star': pion[:, 1],
    'pz_star': pion[:, 2],
  }
  for name, four in p4.items():
    variables[f'p_star_{name}'] = np.linalg.norm(four[:, :3], axis=1)
  for name in REQUIRED_TRACK_COLUMNS[3:]:
    variables[name] = tracks[name]
  variables.update(recoil_variables(pion, event_index, num_events, pairs))
  variables.update(
    v0_variables(tracks, pion, p4['p'], event_index, num_events, pairs)
  )
  # Computed in float64, kept in float32 (the precision of the shards).
  return {
    k: v if v.dtype == bool else v.astype(np.float32)
    for k, v in variables.items()
  }


def track_variables(
  events: shards.Events, chunk_events: int = CHUNK_EVENTS
) -> dict[str, np.ndarray]:
  """Returns every per-track variable the categories use.

  NOTE: The boost to the CMS is along +z (physics.boost_to_cms), so the CMS
  transverse momentum equals the lab one and only `pt` is kept; the
  experiment's pt* differs by the small crossing-angle boost.

  Args:
    events: The events; their track columns must be finite.
    chunk_events: Events per chunk (bounds the memory of track pairs).

  Returns:
    Dict name -> array of shape [num_tracks] (float32, is_max_p_star bool):
    lab p, pt, cos_theta; p_star_{e,mu,pi,K,p} under each mass hypothesis;
    px_star, py_star, pz_star (pion hypothesis); cos_thrust (|cosine| of the
    angle between the track and the thrust axis of the event's tracks, pion
    hypothesis, CMS); is_max_p_star; the track columns charge, dr, dz, PID,
    hits, pValue; recoil variables (`recoil_variables`) and V0 variables
    (`v0_variables`).

  Raises:
    ValueError: Missing or non-finite track columns.
  """
  check_tracks(events)
  if events.num_events <= chunk_events:
    return _chunk_variables(events)
  chunks = [
    _chunk_variables(
      events.take(
        np.arange(start, min(start + chunk_events, events.num_events))
      )
    )
    for start in range(0, events.num_events, chunk_events)
  ]
  return {k: np.concatenate([c[k] for c in chunks]) for k in chunks[0]}


def slow_pion_partner(
  charge: np.ndarray,
  slow_pion_score: np.ndarray,
  event_index: np.ndarray,
  num_events: int,
) -> np.ndarray:
  """Returns for each track its slow-pion partner: the opposite-charge track
  of its event with the highest SlowPion score.

  Args:
    charge: Track charges, shape [n].
    slow_pion_score: SlowPion candidate scores, shape [n].
    event_index: Event of each track, shape [n].
    num_events: Number of events.

  Returns:
    Partner track index, shape [n] int64; -1 where the event has no track of
    opposite charge.
  """
  best = np.full((2, num_events), -1, np.int64)
  for row, sign in enumerate((1, -1)):
    tracks = np.flatnonzero(charge == sign)
    order, rank = segment_rank(slow_pion_score[tracks], event_index[tracks])
    top = tracks[order[rank == 0]]
    best[row, event_index[top]] = top
  opposite_row = np.where(charge > 0, 1, 0)
  return best[opposite_row, event_index]


def add_partner_variables(
  variables: dict[str, np.ndarray], partner: np.ndarray
) -> dict[str, np.ndarray]:
  """Returns `variables` with the slow-pion partner's variables added.

  NOTE: The experiment feeds the pair categories with the other categories'
  outputs as well; here the SlowPion output only chooses the partner, so
  that no in-sample classifier output enters another classifier's inputs.

  Args:
    variables: From `track_variables`, shape [n] each.
    partner: From `slow_pion_partner`, shape [n].

  Returns:
    A new dict with slow_p_star, slow_pionID, slow_cos_thrust and cos_slow
    (cosine of the CMS angle between track and partner), NaN without a
    partner.
  """
  has = partner >= 0
  index = np.where(has, partner, 0)
  out = dict(variables)
  for name, source in (
    ('slow_p_star', 'p_star_pi'),
    ('slow_pionID', 'pionID'),
    ('slow_cos_thrust', 'cos_thrust'),
  ):
    out[name] = np.where(has, variables[source][index], np.nan)
  momentum = np.stack(
    [variables['px_star'], variables['py_star'], variables['pz_star']], axis=1
  )
  out['cos_slow'] = np.where(has, _cosine(momentum, momentum[index]), np.nan)
  return out


def candidate_mask(
  category: Category, variables: dict[str, np.ndarray], partner: np.ndarray
) -> np.ndarray:
  """Returns which tracks are candidates of `category`, shape [n] bool."""
  if category.candidates == 'all':
    return np.ones(len(partner), bool)
  if category.candidates == 'max_p_star':
    return variables['is_max_p_star'].astype(bool)
  if category.candidates == 'slow_partner':
    return partner >= 0
  raise ValueError(f'unknown candidate rule {category.candidates!r}')


def candidate_inputs(
  category: Category, variables: dict[str, np.ndarray]
) -> np.ndarray:
  """Returns the inputs of `category`, shape [n, len(category.inputs)]."""
  return np.stack([variables[name] for name in category.inputs], axis=1).astype(
    np.float32
  )


def truth_targets(
  tracks: dict[str, np.ndarray], partner: np.ndarray
) -> dict[str, np.ndarray]:
  """Returns each category's truth target per track, read off the decay chain.

  Background tracks are never targets. FastHadron targets are the
  generator's fast hadrons (pi or K from the B or from a light meson of the B
  decay) except daughters of flavorless neutral mesons.

  Args:
    tracks: Track columns mc_pdg, mc_mother_pdg, mc_category,
      mc_is_background, shape [n] each.
    partner: Slow-pion partner of each track (`slow_pion_partner`), shape [n].

  Returns:
    Dict category name -> shape [n] bool.
  """
  category = tracks['mc_category']
  pdg = np.abs(tracks['mc_pdg'])
  mother = np.abs(tracks['mc_mother_pdg'])
  signal = ~tracks['mc_is_background'].astype(bool)

  def kind(name):
    return signal & (category == shards.CATEGORY_INDEX[name])

  primary = kind('primary_lepton')
  secondary = kind('secondary_lepton')
  kaon = kind('kaon') & (pdg == 321)
  slow_pion = kind('slow_pion') & (pdg == 211)
  # A pi or K from a flavorless neutral meson (rho0, omega, eta, eta', phi)
  # comes with an opposite-charge partner and carries no flavor.
  fast_hadron = kind('fast_hadron') & ~(
    (mother != 511) & _is_self_conjugate_meson(tracks['mc_mother_pdg'])
  )
  proton = kind('lambda') & (pdg == 2212) & (mother == 3122)

  has = partner >= 0
  partner_slow = np.where(has, slow_pion[np.where(has, partner, 0)], False)
  return {
    'Electron': primary & (pdg == 11),
    'IntermediateElectron': secondary & (pdg == 11),
    'Muon': primary & (pdg == 13),
    'IntermediateMuon': secondary & (pdg == 13),
    'KinLepton': primary & ((pdg == 11) | (pdg == 13)),
    'IntermediateKinLepton': secondary & ((pdg == 11) | (pdg == 13)),
    'Kaon': kaon,
    'SlowPion': slow_pion,
    'FastHadron': fast_hadron,
    'Lambda': proton,
    'FastSlowCorrelated': fast_hadron & partner_slow,
    'MaximumPstar': primary | fast_hadron,
    'KaonPion': kaon & partner_slow,
  }


def _is_self_conjugate_meson(pdg: np.ndarray) -> np.ndarray:
  """Whether PDG ids are quark-antiquark mesons of one flavor (q q-bar).

  A meson id ends in the digits n_q2 n_q3 n_J; it is its own antiparticle
  when n_q2 == n_q3 (111 pi0, 113 rho0, 221 eta, 223 omega, 333 phi...).
  """
  pdg = np.abs(pdg)
  is_meson = (pdg % 10 > 0) & ((pdg // 1000) % 10 == 0) & (pdg > 100)
  return is_meson & ((pdg // 10) % 10 == (pdg // 100) % 10)


def category_qp(
  category: Category,
  score: np.ndarray,
  charge: np.ndarray,
  event_index: np.ndarray,
  num_events: int,
) -> np.ndarray:
  """Returns the category output q * p per event.

  For num_combined == 1 it is the best candidate's flavor q = flavor_sign *
  charge times its target probability p. For num_combined == 3 (Kaon,
  Lambda) the three most probable candidates are combined as independent
  flavor evidences with dilutions d_i = q_i p_i:
    q p = (prod(1 + d_i) - prod(1 - d_i)) / (prod(1 + d_i) + prod(1 - d_i)).
  NOTE: this combination rule is our choice; it reduces to q_1 p_1 for one
  candidate and strengthens agreeing candidates.

  Args:
    category: The category.
    score: Target probability of each candidate, shape [m].
    charge: Charge of each candidate, shape [m].
    event_index: Event of each candidate, shape [m].
    num_events: Number of events E.

  Returns:
    Shape [E] float64 in [-1, 1]; 0 for an event without candidates.
  """
  order, rank = segment_rank(score, event_index)
  top = order[rank < category.num_combined]
  dilution = category.flavor_sign * charge[top] * score[top]
  if category.num_combined == 1:
    qp = np.zeros(num_events)
    qp[event_index[top]] = dilution
    return qp
  dilution = np.clip(dilution, -1 + 1e-9, 1 - 1e-9)
  log_plus = _segment_sum(np.log1p(dilution), event_index[top], num_events)
  log_minus = _segment_sum(np.log1p(-dilution), event_index[top], num_events)
  return np.tanh((log_plus - log_minus) / 2)
