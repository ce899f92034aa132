"""Event generation: Upsilon(4S) -> B pairs, Pythia 8 tag-side decays, truth.

The chain for one chunk of events:

1. Our code draws the coherent C = -1 pair (mixing.py): both proper decay
   times and both flavors at decay.
2. Our code makes the B pair back to back in the CMS with
   dN/dcos(theta*) proportional to 1 - cos^2(theta*) about the beam axis,
   boosts it to the lab (physics.boost_to_lab) and places both decay
   vertices at origin + beta_gamma_B c t.
3. Pythia 8 decays the tag B (a B0 or an anti-B0 by its flavor at decay, with
   `ParticleDecays:mixB = off`) and everything below it with its own decay
   tables. Pythia draws its own decay time for a particle put in by hand, so
   the decay products are translated to the tag vertex chosen in step 2.
4. The truth of every final charged particle (PDG id, mother, grandmother,
   tag-side category) and the tag-side decay flags are read off the decay
   chain with numpy, for the whole chunk at once.
5. detector.reconstruct turns the particles and the detector background into
   reconstructed tracks; the tracks that are found form the rest of event.

The signal B is never passed to Pythia: its decay products are not part of
the rest of event in any mode, so only its flavor, decay time and vertex are
kept. NOTE: in `flavor_specific` mode the signal B stands for a decay such as
B0 -> D- pi+ or B0 -> D*- l+ nu whose flavor is its charge sign; in
`jpsi_ks` mode for B0 -> J/psi K_S; in `nunu` mode for the invisible
B0 -> nu nu-bar. Both Bs fly from the origin (the nominal interaction point);
the beam spot size (a few um in y, about 10 um in x, 350 um in z) is
neglected since impact parameters are measured from it.
"""

from collections.abc import Callable
import concurrent.futures
import dataclasses
import importlib.metadata
import math
import multiprocessing
import pathlib
import tempfile
import time

import numpy as np
import pythia8mc
import tqdm

from flavortag_jax import detector, mixing, physics, shards

# PDG Monte Carlo numbering (PDG Review "Monte Carlo particle numbering").
UPSILON_4S_PDG = 300553
B0_PDG = 511
TAU_PDG = 15
D_STAR_PLUS_PDG = 413
D0_PDG = 421
D_PLUS_PDG = 411
LAMBDA_PDG = 3122
# Long-lived charged particles that leave tracks: e, mu, pi, K, p.
TRACK_PDGS = (11, 13, 211, 321, 2212)
# Neutral kaons are not light resonances for the fast-hadron category: their
# pions come from a displaced K_S vertex, not from the B decay.
NEUTRAL_KAON_PDGS = (130, 310, 311)

# Signal-side decay class of each generation mode (see mixing.py).
MODE_SIGNAL = {
  'nunu': 'invisible',
  'flavor_specific': 'flavor_specific',
  'jpsi_ks': 'cp',
}

# Inclusive yields per B of the B+/B0 mixture at the Upsilon(4S), counting
# particles and antiparticles: CLEO, L. Gibbons et al., Phys. Rev. D 56, 3783
# (1997): B -> D0/anti-D0 X 0.636, D+- X 0.235, D*+- X 0.239. B0 alone makes
# more D+- and fewer D0 than the mixture, so these are guides, not targets.
PDG_CHARM_YIELDS = {'d_star_plus': 0.239, 'd0': 0.636, 'd_plus': 0.235}
# B -> K+- X 0.789 (PDG 2024, B+/B0 admixture); B0 -> X l nu 0.1033 per lepton
# flavor (PDG 2024); mean charged multiplicity of B decays about 5.5 (CLEO).
PDG_KAON_YIELD = 0.789
PDG_SEMILEPTONIC_FRACTION = 0.1033
PDG_CHARGED_MULTIPLICITY = 5.5

# Pythia accepts Random:seed in 1..900000000.
_PYTHIA_SEED_RANGE = 900_000_000


@dataclasses.dataclass(frozen=True)
class GeneratorConfig:
  """Settings of the event generator.

  Attributes:
    constants: Beam, B0 and CP constants (physics.PHYSICS).
    tau0_max_mm: Particles with c tau0 below this decay in Pythia, mm. At
      1000 mm K_S (26.8 mm), Lambda (78.9 mm) and the Sigma, Xi and Omega
      hyperons (24-49 mm) decay; pi+- (7804 mm), K+- (3712 mm), K_L, mu and n
      do not (c tau0 from PDG 2024).
  """

  constants: physics.PhysicsConstants = physics.PHYSICS
  tau0_max_mm: float = 1000.0


@dataclasses.dataclass(frozen=True)
class BPairs:
  """Kinematics, decay times and flavors of a batch of B pairs in the lab.

  Attributes:
    decays: mixing.PairDecays (times in ps, flavors at decay).
    cos_theta_star: cos(theta*) of the tag B about the beam axis in the CMS,
      shape [events].
    p_tag: Tag B four-momentum in the lab (px, py, pz, E), GeV,
      shape [events, 4].
    p_sig: Signal B four-momentum in the lab, GeV, shape [events, 4].
    tag_vertex: Tag B decay vertex in the lab, cm, shape [events, 3].
    sig_vertex: Signal B decay vertex in the lab, cm, shape [events, 3].
  """

  decays: mixing.PairDecays
  cos_theta_star: np.ndarray
  p_tag: np.ndarray
  p_sig: np.ndarray
  tag_vertex: np.ndarray
  sig_vertex: np.ndarray


def check_mode(mode: str) -> str:
  """Returns `mode` if it is a generation mode, else raises ValueError."""
  if mode not in shards.MODES:
    raise ValueError(
      f'unknown generation mode {mode!r}; choose one of {list(shards.MODES)}'
    )
  return mode


def draw_cos_theta_star(rng, num_events):
  """Draws cos(theta*) from dN/dcos = 3/4 (1 - cos^2) by inverting its CDF.

  The CDF F(c) = 1/2 + 3c/4 - c^3/4 = u gives c^3 - 3c + (4u - 2) = 0, whose
  root in [-1, 1] is c = 2 cos((arccos(1 - 2u) + 4 pi) / 3).

  Args:
    rng: np.random.Generator.
    num_events: Number of values.

  Returns:
    Shape [num_events].
  """
  u = rng.uniform(size=num_events)
  return 2.0 * np.cos((np.arccos(1.0 - 2.0 * u) + 4.0 * np.pi) / 3.0)


def pair_momenta(cos_theta_star, phi, constants=physics.PHYSICS):
  """Four-momenta in the lab of a back-to-back B pair.

  Args:
    cos_theta_star: cos(theta*) of the tag B in the CMS, shape [n].
    phi: Azimuth of the tag B, rad, shape [n].
    constants: physics.PhysicsConstants (B0 and Upsilon(4S) masses, boost).

  Returns:
    (p_tag, p_sig), each shape [n, 4] holding (px, py, pz, E) in GeV.
  """
  p_star = constants.p_star_b
  e_star = constants.m_upsilon4s / 2.0
  sin_theta = np.sqrt(np.clip(1.0 - cos_theta_star**2, 0.0, None))
  px = p_star * sin_theta * np.cos(phi)
  py = p_star * sin_theta * np.sin(phi)
  pz = p_star * cos_theta_star
  e = np.full_like(px, e_star)
  p_tag = np.stack(
    physics.boost_to_lab(px, py, pz, e, constants.beta_gamma), -1
  )
  p_sig = np.stack(
    physics.boost_to_lab(-px, -py, -pz, e, constants.beta_gamma), -1
  )
  return p_tag, p_sig


def decay_vertex(p4, t, mass):
  """Lab decay point of a particle made at the origin.

  Args:
    p4: Lab four-momentum (px, py, pz, E), GeV, shape [n, 4].
    t: Proper decay time, ps, shape [n].
    mass: Particle mass, GeV.

  Returns:
    (p / m) c t in cm, shape [n, 3].
  """
  return p4[:, :3] / mass * (physics.C_LIGHT * np.asarray(t))[:, None]


def draw_b_pairs(rng, num_events, mode, constants=physics.PHYSICS) -> BPairs:
  """Draws the B pairs of `num_events` events for a generation mode.

  Args:
    rng: np.random.Generator.
    num_events: Number of events.
    mode: One of shards.MODES.
    constants: physics.PhysicsConstants.

  Returns:
    BPairs with arrays of leading dimension num_events.
  """
  decays = mixing.draw_pair_decays(
    rng, num_events, MODE_SIGNAL[check_mode(mode)], constants
  )
  cos_theta = draw_cos_theta_star(rng, num_events)
  phi = rng.uniform(0.0, 2.0 * np.pi, size=num_events)
  p_tag, p_sig = pair_momenta(cos_theta, phi, constants)
  return BPairs(
    decays=decays,
    cos_theta_star=cos_theta,
    p_tag=p_tag,
    p_sig=p_sig,
    tag_vertex=decay_vertex(p_tag, decays.t_tag, constants.m_b0),
    sig_vertex=decay_vertex(p_sig, decays.t_sig, constants.m_b0),
  )


def pythia_seed(seed_sequence: np.random.SeedSequence) -> int:
  """Derives a Pythia seed in 1..900000000 from a numpy seed sequence."""
  state = int(seed_sequence.generate_state(1, np.uint64)[0])
  return state % _PYTHIA_SEED_RANGE + 1


def make_pythia(seed: int, config: GeneratorConfig = GeneratorConfig()):
  """Builds a Pythia 8 instance that only decays particles put in by hand.

  Args:
    seed: Random seed, 1..900000000.
    config: GeneratorConfig (tau0_max_mm).

  Returns:
    An initialized pythia8mc.Pythia.

  Raises:
    ValueError: Seed out of range.
    RuntimeError: Pythia failed to initialize.
  """
  if not 1 <= seed <= _PYTHIA_SEED_RANGE:
    raise ValueError(f'Pythia seed must be in 1..900000000, got {seed}')
  pythia = pythia8mc.Pythia('', False)
  for setting in (
    'ProcessLevel:all = off',
    'ParticleDecays:mixB = off',
    'ParticleDecays:limitTau0 = on',
    f'ParticleDecays:tau0Max = {config.tau0_max_mm}',
    'Next:numberCount = 0',
    'Print:quiet = on',
    'Random:setSeed = on',
    f'Random:seed = {seed}',
  ):
    pythia.readString(setting)
  if not pythia.init():
    raise RuntimeError('Pythia 8 failed to initialize in decay-only mode')
  return pythia


@dataclasses.dataclass
class TagDecays:
  """Final charged particles of a chunk of tag B decays, with their truth.

  Attributes:
    pdg: PDG id, shape [n] int32.
    p: True lab momentum, GeV, shape [n, 3].
    production_vertex: True production point in the lab, cm, shape [n, 3].
    mother_pdg: PDG id of the mother, shape [n] int32 (the tag B's own
      mother is the Upsilon(4S), 300553).
    grandmother_pdg: PDG id of the grandmother, shape [n] int32.
    category: Index into shards.TRACK_CATEGORIES, shape [n] int8.
    event_index: Event of each particle, shape [n] int64.
    tag_flags: Bit mask of shards.TAG_FLAGS per event, shape [events] uint32.
    counts: Chunk totals of truth-level yields (d_star_plus, d0, d_plus,
      charged, charged_kaons, primary_e, primary_mu, decays).
  """

  pdg: np.ndarray
  p: np.ndarray
  production_vertex: np.ndarray
  mother_pdg: np.ndarray
  grandmother_pdg: np.ndarray
  category: np.ndarray
  event_index: np.ndarray
  tag_flags: np.ndarray
  counts: dict[str, int]


def _read_decays(pythia, b_pdg, p_tag, mass):
  """Runs Pythia on each tag B; returns the flat decay record of the chunk.

  Only the id and mother of every particle are read, and the momentum and
  production point of the final charged ones; the rest is numpy. Particles
  of the chunk are numbered consecutively (flat index), the tag B first in
  each event; Pythia's system entry 0 is dropped.

  Returns:
    pdg [P], mother [P] (flat index, -1 above the tag B), first [events]
    (flat index of each tag B), charged [n] (flat indices of final charged
    particles), kinematics [n, 6] (px, py, pz GeV; production x, y, z mm in
    Pythia's frame), b_decay [events, 3] (Pythia's tag B decay point, mm).
  """
  event = pythia.event
  track_pdgs = frozenset(TRACK_PDGS) | {-x for x in TRACK_PDGS}
  pdg, mother, sizes, kinematics, b_decay = [], [], [], [], []
  for i, (b_id, (px, py, pz, e)) in enumerate(
    zip(b_pdg.tolist(), p_tag.tolist(), strict=True)
  ):
    event.reset()
    event.append(b_id, 1, 0, 0, px, py, pz, e, mass)
    if not pythia.next():
      raise RuntimeError(f'Pythia 8 failed to decay tag B number {i}')
    particles = [event[j] for j in range(1, event.size())]
    ids = [p.id() for p in particles]
    pdg += ids
    mother += [p.mother1() for p in particles]
    sizes.append(len(ids))
    b = particles[0]
    b_decay.append((b.xDec(), b.yDec(), b.zDec()))
    kinematics += [
      (p.px(), p.py(), p.pz(), p.xProd(), p.yProd(), p.zProd())
      for p, pid in zip(particles, ids, strict=True)
      if pid in track_pdgs
    ]
  pdg = np.asarray(pdg, np.int32)
  first = shards.offsets_from_counts(np.asarray(sizes, np.int64))[:-1]
  # Pythia index j >= 1 of an event is flat index first + j - 1; the tag B's
  # mother (Pythia's system entry 0) is the Upsilon(4S): -1 here.
  local_mother = np.asarray(mother, np.int64)
  event_of = np.repeat(np.arange(len(sizes)), sizes)
  mother = np.where(local_mother > 0, first[event_of] + local_mother - 1, -1)
  charged = np.flatnonzero(np.isin(np.abs(pdg), TRACK_PDGS))
  return (
    pdg,
    mother,
    first,
    charged,
    np.asarray(kinematics, np.float64).reshape(-1, 6),
    np.asarray(b_decay, np.float64).reshape(-1, 3),
  )


def _digits(pdg):
  a = np.abs(pdg) % 10000
  return a // 1000, (a // 100) % 10, (a // 10) % 10


def is_open_charm(pdg):
  """True for hadrons with a net charm quark (D, D*, Ds, Lambda_c...).

  Args:
    pdg: PDG ids, any shape.

  Returns:
    Bool array, same shape; charmonium (c c-bar) is False.
  """
  q1, q2, q3 = _digits(np.asarray(pdg))
  meson = (q1 == 0) & (q2 == 4) & (q3 != 4) & (q3 > 0)
  baryon = (q1 > 0) & ((q1 == 4) | (q2 == 4) | (q3 == 4))
  return meson | baryon


def is_light_meson(pdg):
  """True for mesons of u, d, s quarks except neutral kaons (rho, K*...)."""
  pdg = np.asarray(pdg)
  q1, q2, q3 = _digits(pdg)
  light = (q1 == 0) & (q2 >= 1) & (q2 <= 3) & (q3 >= 1) & (q3 <= 3)
  return light & ~np.isin(np.abs(pdg), NEUTRAL_KAON_PDGS)


def _pdg_of(index, pdg):
  """PDG ids at flat indices; -1 (above the tag B) is the Upsilon(4S)."""
  return np.where(index >= 0, pdg[np.maximum(index, 0)], UPSILON_4S_PDG)


def classify_tracks(pdg, mother, b_index, charged):
  """Tag-side categories of final charged particles read off the decay chain.

  Categories (shards.TRACK_CATEGORIES), first match wins:

  * primary_lepton: e or mu whose mother is the tag B (b -> c l nu).
  * secondary_lepton: e or mu whose mother is a charm hadron or a tau
    (b -> c -> s l nu, b -> tau -> l). NOTE: a lepton from B -> tau has the
    charge of a primary lepton but its softer spectrum; it is filed here.
  * slow_pion: pi+- whose mother is a D*+-.
  * kaon: K+- with a charm hadron among its ancestors (b -> c -> s).
  * lambda: proton or antiproton whose mother is a Lambda.
  * fast_hadron: pi+- or K+- made in the B decay itself (the virtual W):
    its mother is the tag B, or a light meson (rho, K*, a1, omega...) whose
    mother is the tag B.
  * other: everything else (K_S daughters, pions from charm...).

  Args:
    pdg: PDG id of every particle of the chunk, shape [P].
    mother: Flat index of each particle's mother, -1 for the tag B,
      shape [P].
    b_index: Flat index of the tag B each particle descends from, shape [P].
    charged: Flat indices of the final charged particles, shape [n].

  Returns:
    (category [n] int8, mother_pdg [n] int32, grandmother_pdg [n] int32).
  """
  apdg = np.abs(pdg[charged])
  mom = mother[charged]
  grandma = np.where(mom >= 0, mother[np.maximum(mom, 0)], -1)
  mother_pdg = _pdg_of(mom, pdg).astype(np.int32)
  grandmother_pdg = _pdg_of(grandma, pdg).astype(np.int32)
  b = b_index[charged]

  # Walk up the chain to the tag B, looking for an open-charm ancestor.
  charm_ancestor = np.zeros(len(charged), bool)
  ancestor = mom.copy()
  while np.any(ancestor >= 0):
    alive = ancestor >= 0
    charm_ancestor |= alive & is_open_charm(_pdg_of(ancestor, pdg))
    ancestor = np.where(alive, mother[np.maximum(ancestor, 0)], -1)

  lepton = (apdg == 11) | (apdg == 13)
  from_b = mom == b
  via_light_meson = is_light_meson(mother_pdg) & (grandma == b)
  conditions = [
    lepton & from_b,
    lepton & (is_open_charm(mother_pdg) | (np.abs(mother_pdg) == TAU_PDG)),
    (apdg == 211) & (np.abs(mother_pdg) == D_STAR_PLUS_PDG),
    (apdg == 321) & charm_ancestor,
    (apdg == 2212) & (np.abs(mother_pdg) == LAMBDA_PDG),
    ((apdg == 211) | (apdg == 321)) & (from_b | via_light_meson),
  ]
  names = [
    'primary_lepton',
    'secondary_lepton',
    'slow_pion',
    'kaon',
    'lambda',
    'fast_hadron',
  ]
  category = np.select(
    conditions, [shards.CATEGORY_INDEX[n] for n in names], 0
  ).astype(np.int8)
  return category, mother_pdg, grandmother_pdg


def _any_per_event(condition, event_index, num_events):
  return np.bincount(event_index[condition], minlength=num_events) > 0


def decay_tag_bs(pythia, q_tag, p_tag, tag_vertex, mass=physics.PHYSICS.m_b0):
  """Decays the tag Bs with Pythia and reads the truth of their products.

  Args:
    pythia: A pythia8mc.Pythia from make_pythia.
    q_tag: Tag B flavor at decay (+1 B0, -1 anti-B0), shape [events].
    p_tag: Tag B lab four-momentum, GeV, shape [events, 4].
    tag_vertex: Where the tag B decays in the lab, cm, shape [events, 3].
    mass: B0 mass, GeV.

  Returns:
    TagDecays of the chunk.
  """
  num_events = len(q_tag)
  b_pdg = np.where(np.asarray(q_tag) > 0, B0_PDG, -B0_PDG)
  pdg, mother, first, charged, kinematics, b_decay_mm = _read_decays(
    pythia, b_pdg, np.asarray(p_tag, np.float64), mass
  )
  event_of = np.repeat(
    np.arange(num_events), np.diff(np.append(first, len(pdg)))
  )
  b_index = first[event_of]
  category, mother_pdg, grandmother_pdg = classify_tracks(
    pdg, mother, b_index, charged
  )
  track_event = event_of[charged]

  # Pythia lets the B fly for a time of its own choosing, from the origin:
  # move every product so that the B decays at our tag vertex (mm -> cm).
  shift = np.asarray(tag_vertex, np.float64) - b_decay_mm / 10.0
  production_vertex = kinematics[:, 3:] / 10.0 + shift[track_event]

  apdg = np.abs(pdg)
  from_b = mother == b_index
  per_event = {
    'semileptonic_e': from_b & (apdg == 11),
    'semileptonic_mu': from_b & (apdg == 13),
    'semileptonic_tau': from_b & (apdg == TAU_PDG),
    'has_d_star': apdg == D_STAR_PLUS_PDG,
    'has_d0': apdg == D0_PDG,
    'has_d_plus': apdg == D_PLUS_PDG,
    'has_lambda': apdg == LAMBDA_PDG,
  }
  tag_flags = np.zeros(num_events, np.uint32)
  for name, condition in per_event.items():
    hit = _any_per_event(condition, event_of, num_events)
    tag_flags |= np.where(hit, shards.FLAG_BIT[name], 0).astype(np.uint32)
  for name, category_name in (
    ('has_kaon_bcs', 'kaon'),
    ('has_slow_pion', 'slow_pion'),
  ):
    hit = _any_per_event(
      category == shards.CATEGORY_INDEX[category_name], track_event, num_events
    )
    tag_flags |= np.where(hit, shards.FLAG_BIT[name], 0).astype(np.uint32)

  counts = {
    'decays': num_events,
    'd_star_plus': int(np.sum(apdg == D_STAR_PLUS_PDG)),
    'd0': int(np.sum(apdg == D0_PDG)),
    'd_plus': int(np.sum(apdg == D_PLUS_PDG)),
    'charged': len(charged),
    'charged_kaons': int(np.sum(apdg[charged] == 321)),
    'primary_e': int(np.sum(per_event['semileptonic_e'])),
    'primary_mu': int(np.sum(per_event['semileptonic_mu'])),
  }
  return TagDecays(
    pdg=pdg[charged],
    p=kinematics[:, :3],
    production_vertex=production_vertex,
    mother_pdg=mother_pdg,
    grandmother_pdg=grandmother_pdg,
    category=category,
    event_index=track_event,
    tag_flags=tag_flags,
    counts=counts,
  )


def _rest_of_event(tag, tag_response, background_response, num_events):
  """Joins the found tag-side and background tracks, grouped by event.

  Args:
    tag: TagDecays of the chunk.
    tag_response: (reco, found) of detector.reconstruct for the tag side.
    background_response: (particles, event_index, reco, found) of the
      background tracks.
    num_events: Events in the chunk.

  Returns:
    (tracks, n_tracks): every shards.TRACK_COLUMNS column, shape [tracks,
    ...], tag products before background within an event; n_tracks shape
    [num_events].
  """
  tag_reco, tag_found = tag_response
  background, background_event, background_reco, background_found = (
    background_response
  )
  num_background = len(background_event)
  truth = {
    'mc_pdg': np.concatenate([tag.pdg, background['pdg']]),
    'mc_mother_pdg': np.concatenate(
      [tag.mother_pdg, np.zeros(num_background, np.int32)]
    ),
    'mc_grandmother_pdg': np.concatenate(
      [tag.grandmother_pdg, np.zeros(num_background, np.int32)]
    ),
    'mc_is_background': np.concatenate(
      [np.zeros(len(tag.pdg), bool), np.ones(num_background, bool)]
    ),
    'mc_category': np.concatenate(
      [tag.category, np.zeros(num_background, np.int8)]
    ),
    'mc_p': np.concatenate([tag.p, background['p']]),
    'mc_production_vertex': np.concatenate(
      [tag.production_vertex, background['production_vertex']]
    ),
  }
  reco = {
    k: np.concatenate([tag_reco[k], background_reco[k]]) for k in tag_reco
  }
  event_index = np.concatenate([tag.event_index, background_event])
  found = np.concatenate([tag_found, background_found])

  # Keep found tracks, grouped by event (tag products before background).
  keep = np.flatnonzero(found)
  keep = keep[np.argsort(event_index[keep], kind='stable')]
  tracks = {}
  for name, (dtype, _, _) in shards.TRACK_COLUMNS.items():
    column = reco[name] if name in reco else truth[name]
    tracks[name] = np.asarray(column, dtype)[keep]
  n_tracks = np.bincount(event_index[keep], minlength=num_events)
  return tracks, n_tracks


def _seed_sequence(seed) -> np.random.SeedSequence:
  if isinstance(seed, np.random.SeedSequence):
    return seed
  if isinstance(seed, bool) or not isinstance(seed, int | np.integer):
    raise ValueError(f'seed must be a non-negative integer, got {seed!r}')
  if seed < 0:
    raise ValueError(f'seed must be a non-negative integer, got {seed}')
  return np.random.SeedSequence(int(seed))


def _config_attrs(config) -> dict:
  return _json_ready(dataclasses.asdict(config))


def _json_ready(value):
  """Turns nested dicts, tuples and numpy scalars into JSON types."""
  if isinstance(value, dict):
    return {str(k): _json_ready(v) for k, v in value.items()}
  if isinstance(value, list | tuple):
    return [_json_ready(v) for v in value]
  if isinstance(value, np.generic):
    return value.item()
  return value


def generate_events(
  num_events: int,
  seed,
  mode: str,
  config: GeneratorConfig = GeneratorConfig(),
  detector_config=None,
  pythia=None,
) -> shards.Events:
  """Generates one chunk of events: B pairs, tag decays, detector response.

  Args:
    num_events: Number of events, > 0.
    seed: Non-negative int or np.random.SeedSequence; it alone fixes the
      kinematics, the Pythia seed and the detector response.
    mode: One of shards.MODES.
    config: GeneratorConfig.
    detector_config: detector.DetectorConfig; its default if None.
    pythia: A Pythia from make_pythia(..., config) to reuse (its random
      stream is reset to this chunk's seed, so the result is the same as
      with a new one); a new one is built if None.

  Returns:
    shards.Events with the reconstructed tracks of the rest of event (tag B
    products and background). attrs hold the mode, the settings and the
    truth-level tag decay counts of the chunk.

  Raises:
    ValueError: Unknown mode, num_events < 1 or a bad seed.
  """
  check_mode(mode)
  if isinstance(num_events, bool) or int(num_events) != num_events:
    raise ValueError(f'num_events must be an integer, got {num_events!r}')
  if num_events < 1:
    raise ValueError(
      f'num_events must be at least 1, got {num_events}; ask for a positive '
      'number of events'
    )
  if detector_config is None:
    detector_config = detector.DetectorConfig()
  sequence = _seed_sequence(seed)
  pair_seed, pythia_sequence, detector_seed = sequence.spawn(3)

  pairs = draw_b_pairs(
    np.random.default_rng(pair_seed), num_events, mode, config.constants
  )
  if pythia is None:
    pythia = make_pythia(pythia_seed(pythia_sequence), config)
  else:
    pythia.rndm.init(pythia_seed(pythia_sequence))
  tag = decay_tag_bs(
    pythia,
    pairs.decays.q_tag,
    pairs.p_tag,
    pairs.tag_vertex,
    config.constants.m_b0,
  )

  # Detector response of tag-side particles and of background tracks.
  detector_rng = np.random.default_rng(detector_seed)
  tag_particles = {
    'pdg': tag.pdg,
    'p': tag.p,
    'production_vertex': tag.production_vertex,
  }
  tag_reco, tag_found = detector.reconstruct(
    tag_particles, detector_rng, detector_config
  )
  background, background_event = detector.background_particles(
    num_events, detector_rng, detector_config
  )
  background_reco, background_found = detector.reconstruct(
    background, detector_rng, detector_config
  )

  tracks, n_tracks = _rest_of_event(
    tag,
    (tag_reco, tag_found),
    (background, background_event, background_reco, background_found),
    num_events,
  )

  decays = pairs.decays
  events = {
    'q_tag': decays.q_tag,
    'q_sig': decays.q_sig,
    't_tag': decays.t_tag,
    't_sig': decays.t_sig,
    'dt': decays.dt,
    'tag_vertex': pairs.tag_vertex,
    'sig_vertex': pairs.sig_vertex,
    'n_tracks': n_tracks,
    'tag_flags': tag.tag_flags,
  }
  events = {
    name: np.asarray(events[name], dtype)
    for name, (dtype, _, _) in shards.EVENT_COLUMNS.items()
  }
  attrs = {
    'mode': mode,
    'generator': 'flavortag_jax.generator with Pythia 8 (pythia8mc)',
    'pythia_version': importlib.metadata.version('pythia8mc'),
    'generator_config': _config_attrs(config),
    'detector_config': _config_attrs(detector_config),
    'tag_decay_counts': tag.counts,
  }
  return shards.Events(
    events, tracks, shards.offsets_from_counts(n_tracks), attrs
  )


@dataclasses.dataclass(frozen=True)
class ShardPlan:
  """Which events of a sample one shard holds.

  Attributes:
    index: Shard number in the full sample.
    num_shards: Number of shards of the full sample.
    num_events: Events in this shard.
  """

  index: int
  num_shards: int
  num_events: int

  @property
  def file_name(self) -> str:
    return f'shard-{self.index:05d}-of-{self.num_shards:05d}.h5'


def plan_shards(
  num_events: int, events_per_shard: int, job_index=0, num_jobs=1
) -> list[ShardPlan]:
  """Splits a sample into shards and picks those of one job.

  Shard s holds events [s K, min(N, (s + 1) K)) of the sample; job j of a
  job array of M jobs writes the shards s with s % M == j.

  Args:
    num_events: Events in the full sample, N.
    events_per_shard: Events per shard, K.
    job_index: This job's index j, 0 <= j < M.
    num_jobs: Number of jobs M.

  Returns:
    The ShardPlans of this job, in order.

  Raises:
    ValueError: A non-positive count, j outside [0, M), or a job left
      without shards.
  """
  for name, value in (
    ('num_events', num_events),
    ('events_per_shard', events_per_shard),
    ('num_shards', num_jobs),
  ):
    if value < 1:
      raise ValueError(f'{name} must be at least 1, got {value}')
  if not 0 <= job_index < num_jobs:
    raise ValueError(
      f'shard_index must be in [0, {num_jobs}) for num_shards={num_jobs}, '
      f'got {job_index}'
    )
  total = math.ceil(num_events / events_per_shard)
  if job_index >= total:
    raise ValueError(
      f'shard_index {job_index} has nothing to do: {num_events} events in '
      f'shards of {events_per_shard} make only {total} shards; use fewer '
      'jobs or smaller shards'
    )
  return [
    ShardPlan(
      s, total, min(events_per_shard, num_events - s * events_per_shard)
    )
    for s in range(job_index, total, num_jobs)
  ]


def check_existing_shards(out_dir, plans: list[ShardPlan]) -> None:
  """Refuses an output folder that holds shards of a differently split sample.

  Shards of the same split (other jobs of a job array, or an earlier run
  being redone) may be there; any other `*.h5` file would be read together
  with the new shards and mix two samples.

  Raises:
    ValueError: The folder holds other `*.h5` files.
  """
  total = plans[0].num_shards
  expected = {ShardPlan(s, total, 0).file_name for s in range(total)}
  foreign = sorted(
    p.name for p in pathlib.Path(out_dir).glob('*.h5') if p.name not in expected
  )
  if foreign:
    raise ValueError(
      f'{out_dir} already holds shards of another sample ({foreign[:3]}...); '
      f'this sample is split into {total} shards. Use an empty --out_dir or '
      'remove the old shards'
    )


def check_writable(out_dir) -> pathlib.Path:
  """Creates `out_dir` if needed and checks that files can be written there.

  Raises:
    ValueError: The folder cannot be made or written to.
  """
  out_dir = pathlib.Path(out_dir)
  try:
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryFile(dir=out_dir):
      pass
  except OSError as e:
    raise ValueError(
      f'cannot write event shards to {out_dir}: {e}; choose a writable '
      '--out_dir'
    ) from e
  return out_dir


@dataclasses.dataclass(frozen=True)
class ShardSummary:
  """What one written shard holds.

  Attributes:
    path: The shard file.
    num_events: Events in it.
    num_tracks: Reconstructed tracks in it.
    category_counts: Tracks per shards.TRACK_CATEGORIES entry, background
      excluded, length len(TRACK_CATEGORIES).
    num_background: Background tracks.
    num_empty_events: Events without any reconstructed track.
    tag_decay_counts: Truth-level yields of the tag decays.
  """

  path: str
  num_events: int
  num_tracks: int
  category_counts: tuple[int, ...]
  num_background: int
  num_empty_events: int
  tag_decay_counts: dict[str, int]


def generate_shard(
  out_dir,
  plan: ShardPlan,
  seed: int,
  mode: str,
  config,
  detector_config,
  pythia=None,
) -> ShardSummary:
  """Generates and writes one shard; its random stream depends on (seed, s).

  Args:
    out_dir: Output folder.
    plan: Which shard s of the sample.
    seed: Seed of the sample; the shard uses SeedSequence(seed).spawn()[s].
    mode: One of shards.MODES.
    config: GeneratorConfig.
    detector_config: detector.DetectorConfig.
    pythia: Optional Pythia to reuse (see generate_events).

  Returns:
    ShardSummary of the written shard.
  """
  sequence = np.random.SeedSequence(seed, spawn_key=(plan.index,))
  events = generate_events(
    plan.num_events, sequence, mode, config, detector_config, pythia
  )
  events.attrs.update(
    seed=seed, shard_index=plan.index, num_shards=plan.num_shards
  )
  path = shards.write_shard(pathlib.Path(out_dir) / plan.file_name, events)
  background = events.tracks['mc_is_background']
  categories = np.bincount(
    events.tracks['mc_category'][~background],
    minlength=len(shards.TRACK_CATEGORIES),
  )
  return ShardSummary(
    path=str(path),
    num_events=events.num_events,
    num_tracks=events.num_tracks,
    category_counts=tuple(int(c) for c in categories),
    num_background=int(background.sum()),
    num_empty_events=int(np.sum(events.events['n_tracks'] == 0)),
    tag_decay_counts=dict(events.attrs['tag_decay_counts']),
  )


@dataclasses.dataclass(frozen=True)
class GenerationSummary:
  """Totals of a generation run.

  Attributes:
    shards: ShardSummary of every shard written.
    seconds: Wall time, s.
    num_workers: Worker processes used.
  """

  shards: tuple[ShardSummary, ...]
  seconds: float
  num_workers: int

  @property
  def num_events(self) -> int:
    return sum(s.num_events for s in self.shards)

  @property
  def num_tracks(self) -> int:
    return sum(s.num_tracks for s in self.shards)

  def tag_decay_count(self, name: str) -> int:
    return sum(s.tag_decay_counts[name] for s in self.shards)

  def format(self) -> str:
    """Returns a human-readable report of the run."""
    n = self.num_events
    decays = self.tag_decay_count('decays')
    lines = [
      f'events: {n} in {len(self.shards)} shards, '
      f'{self.seconds:.1f} s, {n / self.seconds:.0f} events/s with '
      f'{self.num_workers} worker(s)',
      f'reconstructed tracks per event: {self.num_tracks / n:.2f} '
      f'(background {sum(s.num_background for s in self.shards) / n:.2f}); '
      f'events without tracks: {sum(s.num_empty_events for s in self.shards)}',
      'track categories (fraction of tag-side tracks):',
    ]
    category = np.sum([s.category_counts for s in self.shards], axis=0)
    for name, count in zip(shards.TRACK_CATEGORIES, category, strict=True):
      lines.append(f'  {name:<17s} {count / max(category.sum(), 1):.3f}')
    lines.append('tag B decays per B (generated, reference):')
    rows = [
      ('D*+- yield', 'd_star_plus', PDG_CHARM_YIELDS['d_star_plus']),
      ('D0 yield', 'd0', PDG_CHARM_YIELDS['d0']),
      ('D+- yield', 'd_plus', PDG_CHARM_YIELDS['d_plus']),
      ('K+- yield', 'charged_kaons', PDG_KAON_YIELD),
      ('B -> X e nu', 'primary_e', PDG_SEMILEPTONIC_FRACTION),
      ('B -> X mu nu', 'primary_mu', PDG_SEMILEPTONIC_FRACTION),
      ('charged / B', 'charged', PDG_CHARGED_MULTIPLICITY),
    ]
    for label, key, reference in rows:
      value = self.tag_decay_count(key) / decays
      lines.append(f'  {label:<14s} {value:6.3f}   {reference:6.3f}')
    lines.append(
      '  (references: charm yields CLEO PRD 56, 3783 (1997) for the B+/B0 '
      'mixture; K+- and X l nu PDG 2024)'
    )
    return '\n'.join(lines)


# The Pythia of a worker process, built once by _start_worker.
_worker_pythia = None


def _start_worker(config):
  global _worker_pythia
  _worker_pythia = make_pythia(1, config)


def _generate_shard_task(args):
  return generate_shard(*args, pythia=_worker_pythia)


def generate(
  out_dir,
  num_events: int,
  seed: int,
  mode: str,
  *,
  events_per_shard: int = 10_000,
  num_workers: int = 1,
  shard_index: int = 0,
  num_shards: int = 1,
  config: GeneratorConfig = GeneratorConfig(),
  detector_config=None,
  progress: bool = False,
  on_shard: Callable[[ShardSummary], None] | None = None,
) -> GenerationSummary:
  """Generates a sample into HDF5 shards.

  Every shard has its own random stream, derived from (seed, shard number)
  only, so the content does not depend on the number of workers or jobs.

  Args:
    out_dir: Output folder (created if needed).
    num_events: Events in the full sample.
    seed: Non-negative integer seed of the sample.
    mode: One of shards.MODES.
    events_per_shard: Events per shard file.
    num_workers: Worker processes; each builds its own Pythia.
    shard_index: Index of this job in a job array.
    num_shards: Number of jobs in the job array.
    config: GeneratorConfig.
    detector_config: detector.DetectorConfig; its default if None.
    progress: Show a progress bar with rate and ETA.
    on_shard: Called with each ShardSummary as shards complete.

  Returns:
    GenerationSummary of the shards written by this job.

  Raises:
    ValueError: Unknown mode, non-positive counts, a bad seed, a bad job
      index, or an output folder that cannot be written.
  """
  check_mode(mode)
  _seed_sequence(seed)
  if num_workers < 1:
    raise ValueError(f'num_workers must be at least 1, got {num_workers}')
  plans = plan_shards(num_events, events_per_shard, shard_index, num_shards)
  out_dir = check_writable(out_dir)
  check_existing_shards(out_dir, plans)
  if detector_config is None:
    detector_config = detector.DetectorConfig()
  tasks = [
    (str(out_dir), plan, int(seed), mode, config, detector_config)
    for plan in plans
  ]

  sequential = num_workers == 1 or len(tasks) == 1
  workers = 1 if sequential else min(num_workers, len(tasks))
  start = time.perf_counter()
  results = []
  bar = tqdm.tqdm(
    total=sum(p.num_events for p in plans),
    unit='event',
    disable=not progress,
    smoothing=0.1,
  )
  with bar:
    if sequential:
      pythia = make_pythia(1, config)
      for task in tasks:
        summary = generate_shard(*task, pythia=pythia)
        results.append(summary)
        bar.update(summary.num_events)
        if on_shard:
          on_shard(summary)
    else:
      context = multiprocessing.get_context('spawn')
      with concurrent.futures.ProcessPoolExecutor(
        workers,
        context,
        initializer=_start_worker,
        initargs=(config,),
      ) as pool:
        futures = [pool.submit(_generate_shard_task, t) for t in tasks]
        for future in concurrent.futures.as_completed(futures):
          summary = future.result()
          results.append(summary)
          bar.update(summary.num_events)
          if on_shard:
            on_shard(summary)
  results.sort(key=lambda s: s.path)
  return GenerationSummary(tuple(results), time.perf_counter() - start, workers)
