"""Tag-side B decays by Pythia 8, and the truth read off their decay chain.

Pythia 8 (`pythia8mc`, `ProcessLevel:all = off`, `ParticleDecays:mixB =
off`) decays a B0 or anti-B0 put in by hand, and everything below it, with
its own decay tables. For a chunk of decays this module reads the id and
mother of every particle and the momentum and production point of the final
charged ones; the truth of each track (mother, grandmother, tag-side
category) and the decay flags of each tag B then follow with numpy for the
whole chunk at once.
"""

import dataclasses

import numpy as np
import pythia8mc

from flavortag_jax import physics, shards

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

# Inclusive yields per B of the B+/B0 mixture at the Upsilon(4S), counting
# particles and antiparticles: CLEO, L. Gibbons et al., Phys. Rev. D 56, 3783
# (1997): B -> D0/anti-D0 X 0.636, D+- X 0.235, D*+- X 0.239. B0 alone makes
# more D+- and fewer D0 than the mixture, so these are guides, not targets.
MEASURED_CHARM_YIELDS = {'d_star_plus': 0.239, 'd0': 0.636, 'd_plus': 0.235}
# B -> K+- X 0.789 +- 0.025 (PDG 2024 listings, B+/B0 admixture);
# B0 -> l+ nu X 0.1033 +- 0.0028 per lepton flavor (PDG 2024 listings);
# mean charged multiplicity of a B decay 5.36 +- 0.01 +0.11 -0.08 (CLEO,
# "Charged track multiplicity in B meson decay", hep-ex/9907057).
MEASURED_KAON_YIELD = 0.789
MEASURED_SEMILEPTONIC_FRACTION = 0.1033
MEASURED_CHARGED_MULTIPLICITY = 5.36

# Particles with c tau0 below this decay in Pythia, mm. At 1000 mm K_S
# (26.8 mm), Lambda (78.9 mm) and the Sigma, Xi and Omega hyperons (24-49 mm)
# decay; pi+- (7804 mm), K+- (3712 mm), K_L, mu and n do not (c tau0 from
# PDG 2024).
TAU0_MAX_MM = 1000.0
# Pythia accepts Random:seed in 1..900000000.
_PYTHIA_SEED_RANGE = 900_000_000


def pythia_seed(seed_sequence: np.random.SeedSequence) -> int:
  """Derives a Pythia seed in 1..900000000 from a numpy seed sequence."""
  state = int(seed_sequence.generate_state(1, np.uint64)[0])
  return state % _PYTHIA_SEED_RANGE + 1


def make_pythia(seed: int, tau0_max_mm: float = TAU0_MAX_MM):
  """Builds a Pythia 8 instance that only decays particles put in by hand.

  Args:
    seed: Random seed, 1..900000000.
    tau0_max_mm: Particles with c tau0 below this decay, mm.

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
    f'ParticleDecays:tau0Max = {tau0_max_mm}',
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
