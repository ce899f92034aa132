"""Event generation: Upsilon(4S) -> B pairs to detector-level event shards.

The chain for one chunk of events:

1. Our code draws the coherent C = -1 pair (mixing.py): both proper decay
   times and both flavors at decay.
2. Our code makes the B pair back to back in the CMS with
   dN/dcos(theta*) proportional to 1 - cos^2(theta*) about the beam axis,
   boosts it to the lab (physics.boost_to_lab) and places both decay
   vertices at origin + beta_gamma_B c t.
3. Pythia 8 decays the tag B (a B0 or an anti-B0 by its flavor at decay, with
   `ParticleDecays:mixB = off`) and everything below it with its own decay
   tables (tag_decays.py). Pythia draws its own decay time for a particle put
   in by hand, so the decay products are translated to the tag vertex chosen
   in step 2.
4. The truth of every final charged particle (PDG id, mother, grandmother,
   tag-side category) and the tag-side decay flags are read off the decay
   chain (tag_decays.py).
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
import tqdm

from flavortag_jax import detector, mixing, physics, shards, tag_decays

# Signal-side decay class of each generation mode (see mixing.py).
MODE_SIGNAL = {
  'nunu': 'invisible',
  'flavor_specific': 'flavor_specific',
  'jpsi_ks': 'cp',
}


@dataclasses.dataclass(frozen=True)
class GeneratorConfig:
  """Settings of the event generator.

  Attributes:
    constants: Beam, B0 and CP constants (physics.PHYSICS).
    tau0_max_mm: Particles with c tau0 below this decay in Pythia, mm (see
      tag_decays.TAU0_MAX_MM: K_S and hyperons decay, pi, K, mu do not).
  """

  constants: physics.PhysicsConstants = physics.PHYSICS
  tau0_max_mm: float = tag_decays.TAU0_MAX_MM


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


def _rest_of_event(tag, tag_response, background_response, num_events):
  """Joins the found tag-side and background tracks, grouped by event.

  Args:
    tag: tag_decays.TagDecays of the chunk.
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
    pythia: A Pythia from tag_decays.make_pythia with config.tau0_max_mm to
      reuse (its random
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
    pythia = tag_decays.make_pythia(
      tag_decays.pythia_seed(pythia_sequence), config.tau0_max_mm
    )
  else:
    pythia.rndm.init(tag_decays.pythia_seed(pythia_sequence))
  tag = tag_decays.decay_tag_bs(
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
      (
        'D*+- yield',
        'd_star_plus',
        tag_decays.MEASURED_CHARM_YIELDS['d_star_plus'],
      ),
      ('D0 yield', 'd0', tag_decays.MEASURED_CHARM_YIELDS['d0']),
      ('D+- yield', 'd_plus', tag_decays.MEASURED_CHARM_YIELDS['d_plus']),
      ('K+- yield', 'charged_kaons', tag_decays.MEASURED_KAON_YIELD),
      ('B -> X e nu', 'primary_e', tag_decays.MEASURED_SEMILEPTONIC_FRACTION),
      ('B -> X mu nu', 'primary_mu', tag_decays.MEASURED_SEMILEPTONIC_FRACTION),
      ('charged / B', 'charged', tag_decays.MEASURED_CHARGED_MULTIPLICITY),
    ]
    for label, key, reference in rows:
      value = self.tag_decay_count(key) / decays
      lines.append(f'  {label:<14s} {value:6.3f}   {reference:6.3f}')
    lines.append(
      '  (references: charm yields CLEO PRD 56, 3783 (1997) and K+- PDG 2024, '
      'both for the B+/B0 mixture; X l nu PDG 2024 for B0; multiplicity CLEO '
      'hep-ex/9907057)'
    )
    return '\n'.join(lines)


# The Pythia of a worker process, built once by _start_worker.
_worker_pythia = None


def _start_worker(config):
  global _worker_pythia
  _worker_pythia = tag_decays.make_pythia(1, config.tau0_max_mm)


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
      pythia = tag_decays.make_pythia(1, config.tau0_max_mm)
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
