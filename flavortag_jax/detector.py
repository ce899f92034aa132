"""Parametric Belle II-like detector response: true particles to tracks.

Every number lives in `DetectorConfig`, with its unit and source: the Belle II
Technical Design Report (TDR, arXiv:1011.0352) and the Belle II Physics Book
(arXiv:1808.10567). Values are approximate; the aim is a response in which
the track features carry the information they carry in the experiment, not
a Geant4 simulation.

Units: lengths in cm, momenta in GeV, magnetic field in T, angles in degrees
where a name says `_deg`.

All functions are vectorized with numpy over the particles of a chunk.
"""

import dataclasses
import math

import numpy as np

from flavortag_jax import physics, shards

# Reconstructed track columns: the non-truth columns of the shard schema.
RECO_COLUMNS = tuple(k for k in shards.TRACK_COLUMNS if not k.startswith('mc_'))

# Mass hypotheses of the particle identification, in the order of the
# likelihood arrays.
HYPOTHESES = ('electron', 'muon', 'pion', 'kaon', 'proton')
PID_COLUMNS = ('electronID', 'muonID', 'pionID', 'kaonID', 'protonID')

# Absolute PDG ids of the hypotheses, their masses in GeV (physics.MASS_BY_PDG)
# and proper decay lengths c tau in cm (PDG 2024). Electrons and protons are
# stable; the muon c tau (658.6 m) is kept for completeness.
SPECIES_PDG = np.array([11, 13, 211, 321, 2212])
SPECIES_MASS = np.array([physics.MASS_BY_PDG[int(p)] for p in SPECIES_PDG])
SPECIES_CTAU = np.array([np.inf, 65862.0, 780.45, 371.2, np.inf])
# Charge of the particle with a positive PDG id: e- and mu- are leptons with
# positive ids, pi+, K+ and p are hadrons with positive ids.
SPECIES_CHARGE = np.array([-1, -1, 1, 1, 1])
ELECTRON, MUON, PION, KAON, PROTON = range(5)

# Curvature constant: R [cm] = pT [GeV] / (CURVATURE * B [T]), from
# pT = 0.299792458 B R with R in m.
CURVATURE = 0.00299792458


@dataclasses.dataclass(frozen=True)
class DetectorConfig:
  """Every number of the detector response, with unit and source.

  Geometry and tracking (TDR chapters on PXD, SVD and CDC; Physics Book):
    b_field_tesla: Solenoid field, T (TDR: 1.5 T).
    pxd_radii_cm: PXD layer radii, cm (TDR: 1.4 and 2.2 cm).
    svd_radii_cm: SVD layer radii, cm (TDR: 3.9, 8.0, 10.4, 13.5 cm).
    svd_sides: Strip sides per SVD layer, each giving one hit (TDR: 2,
      double-sided strip sensors).
    cdc_inner_radius_cm, cdc_outer_radius_cm: CDC sensitive volume, cm
      (TDR: 16 to 113 cm).
    cdc_num_layers: CDC sense wire layers (TDR: 56). NOTE: the layers are
      spaced evenly, at the centres of 56 equal radial slices; the real
      layer radii (16.8 to 111.1 cm, denser in the innermost superlayer)
      differ by at most about 1 cm.
    cdc_z_forward_cm, cdc_z_backward_cm: z of the CDC end plates at large
      radius, cm (TDR: the chamber spans about -83 to +158 cm). At smaller
      radius the end plates follow the acceptance cone.
    pxd_hit_efficiency, svd_hit_efficiency, cdc_hit_efficiency: Probability
      that a crossed layer (an SVD strip side) gives a hit attached to the
      track (approximate: the silicon sensors are designed for above 99 %
      and CDC cells for about 98 %; the values here are a little lower
      for hits that pattern recognition leaves off the track).
    theta_min_deg, theta_max_deg: Polar acceptance of tracking in the lab,
      degrees (TDR: 17 to 150 degrees).
    min_hits: Fewest hits (PXD + SVD + CDC) for a reconstructed track; a
      helix has five parameters and the fit needs redundancy.
    tracking_efficiency_plateau: Efficiency of track finding for stiff
      tracks (Physics Book: about 0.9 above 250 MeV for the tracks of
      a B decay, with the slow pion of D* the hard case).
    tracking_pt_threshold_gev: pT below which no track is found, GeV
      (Physics Book: the turn-on starts near 50 MeV).
    tracking_pt_turn_on_gev: pT scale of the turn-on, GeV: efficiency =
      plateau * (1 - exp(-(pT - threshold) / scale)), which reaches 98 % of
      the plateau 200 MeV above threshold.

  Resolutions (TDR tracking performance studies; Physics Book):
    pt_resolution_curvature: Term a of sigma(pT)/pT = a pT (+) b / beta,
      per GeV (0.0011).
    pt_resolution_scattering: Term b, multiple scattering (0.0025).
    dr_resolution_cm: Constant term of the dr resolution, cm (12 um;
      TDR and Physics Book quote 10 to 20 um for the intrinsic term).
    dz_resolution_cm: Constant term of the dz resolution, cm (18 um).
    ip_scattering_cm_gev: Multiple-scattering term of dr and dz, cm GeV:
      sigma = const (+) term / (p beta sin^power theta) (20 um GeV, TDR).
    dr_sin_power: Power of sin theta in the dr scattering term (1.5, TDR).
    dz_sin_power: Power of sin theta in the dz scattering term. NOTE: 2.5
      rather than 1.5, since the z projection of the scattering angle
      carries one more 1 / sin theta; set 1.5 for the common form.

  Track fit quality:
    fake_fit_fraction: Fraction of tracks with a wrong hit or a kink from
      hard scattering, whose fit p-value piles up at 0 (a few %).
    bad_fit_pvalue_power: Badly fitted tracks get pValue = u^power with u
      uniform, so P(pValue < 0.01) = 0.01^(1 / power) (0.63 for 10).

  Particle identification (TDR chapters on CDC, TOP, ARICH, ECL and KLM;
  Physics Book). The likelihood model is described in
  `_pid_log_likelihoods`:
    dedx_resolution: Relative dE/dx resolution of a track with all 56 CDC
      layers (TDR: about 7 to 8 % with truncated mean), scaled by
      sqrt(56 / n) for n CDC hits.
    dedx_min_samples: n used for tracks with fewer CDC hits; the SVD
      samples alone count like this many CDC layers.
    dedx_log_constant: Constant k of the energy-loss curve dE/dx ~
      (1 + 1 / (beta gamma)^2) (k + 2 ln(beta gamma)) - 1, a Bethe-Bloch
      shape; k = 13.9 puts the minimum near beta gamma = 4 and, with the
      saturation below, the Fermi plateau 1.45 times above the minimum,
      as in helium-based drift chamber gas.
    dedx_saturation_beta_gamma: beta gamma where the relativistic rise
      saturates (density effect; about 300 in the CDC gas).
    outer_barrel_radius_cm: Radius a track must reach for TOP and ECL
      barrel information, cm (TDR: TOP quartz bars at about 120 cm).
    forward_endcap_z_cm, backward_endcap_z_cm: z of the ARICH / forward
      ECL and of the backward ECL faces, cm (TDR: about +170 and -100 cm).
    top_theta_min_deg, top_theta_max_deg: TOP polar coverage, degrees
      (TDR: 31 to 128 degrees); ARICH covers the forward end below it and
      the backward end has no Cherenkov detector.
    top_inverse_beta_resolution, arich_inverse_beta_resolution: Per-track
      resolution of the Cherenkov detectors at high momentum, expressed as
      the resolution of 1 / beta they imply (TDR: K/pi separation about
      3 sigma at 4 GeV for TOP, about 4 sigma for ARICH).
    cherenkov_scattering_gev: Multiple scattering in the material in front
      of TOP and ARICH blurs the track direction and with it the Cherenkov
      measurement: sigma(1 / beta) = resolution (+) this / (p / GeV). With
      6.4e-3 GeV the mu/pi separation is 1 to 2 sigma between 0.3 and
      0.6 GeV, while the K/pi separation is 16 sigma at 1 GeV (a value
      chosen for this model, not a TDR number).
    cherenkov_tail_fraction, cherenkov_tail_scale: Fraction of tracks with
      a degraded Cherenkov measurement (background photons, edges of quartz
      bars) and the factor on its width.
    cherenkov_missing_fraction: Fraction of tracks that reach TOP or ARICH
      and give no Cherenkov information (gaps between modules).
    electron_eop_mean, electron_eop_resolution, electron_eop_stochastic:
      Electron E/p core, sigma = resolution (+) stochastic / sqrt(p / GeV)
      (ECL: CsI(Tl), 16 X0, sigma_E/E about 2 % at 1 GeV).
    electron_brem_fraction, electron_brem_eop_mean, electron_brem_eop_width:
      Electrons radiating in the material before the ECL: a low tail.
    ecl_mip_energy_gev, ecl_mip_width_gev: ECL deposit of a minimum
      ionizing track, GeV (30 cm CsI at 5.6 MeV/cm: about 0.17 GeV).
    hadron_shower_fraction, hadron_shower_eop_mean, hadron_shower_eop_width:
      Fraction of hadrons that shower in the ECL (30 cm of CsI is 0.76
      nuclear interaction lengths: 1 - exp(-0.76) = 0.53) and their E/p
      distribution.
    ecl_missing_fraction: Fraction of tracks reaching the ECL without a
      matched cluster (gaps between crystals, cluster-matching losses).
    klm_min_momentum_gev, klm_turn_on_gev: A muon needs about 0.6 GeV to
      reach the KLM (TDR); its penetration probability rises as 1 -
      exp(-(p - min) / turn_on).
    klm_penetration_probability: Probability per hypothesis (e, mu, pi, K,
      p) of a KLM track match above the turn-on: muon efficiency about 0.9,
      hadron punch-through and decays in flight give a few % for pions.
    klm_hadron_range_mean, klm_hadron_range_width: Penetration range of a
      non-muon KLM match, in units of the muon range resolution (muons are
      centred at 0 with width 1).

  Background:
    background_rate: Mean number of beam background charged particles per
      event (Poisson), drawn within the tracking acceptance and above the
      pT threshold; about 60 % of them become tracks. Tunable; the default
      1.0 is a round working value for this study, not a measured rate.
    background_electron_fraction: Fraction of e+- (conversions, Touschek)
      among background tracks; the rest are pions.
    background_pt_mean_gev: Mean pT of background tracks above the tracking
      threshold, GeV (exponential).
    background_vertex_r_sigma_cm, background_vertex_z_sigma_cm: Gaussian
      spread of background production points, cm (the beam pipe and the
      inner layers, and the whole length of the interaction region).
  """

  b_field_tesla: float = 1.5
  pxd_radii_cm: tuple[float, ...] = (1.4, 2.2)
  svd_radii_cm: tuple[float, ...] = (3.9, 8.0, 10.4, 13.5)
  svd_sides: int = 2
  cdc_inner_radius_cm: float = 16.0
  cdc_outer_radius_cm: float = 113.0
  cdc_num_layers: int = 56
  cdc_z_forward_cm: float = 158.3
  cdc_z_backward_cm: float = -83.1
  pxd_hit_efficiency: float = 0.98
  svd_hit_efficiency: float = 0.98
  cdc_hit_efficiency: float = 0.96
  theta_min_deg: float = 17.0
  theta_max_deg: float = 150.0
  min_hits: int = 6
  tracking_efficiency_plateau: float = 0.9
  tracking_pt_threshold_gev: float = 0.05
  tracking_pt_turn_on_gev: float = 0.05

  pt_resolution_curvature: float = 0.0011
  pt_resolution_scattering: float = 0.0025
  dr_resolution_cm: float = 0.0012
  dz_resolution_cm: float = 0.0018
  ip_scattering_cm_gev: float = 0.0020
  dr_sin_power: float = 1.5
  dz_sin_power: float = 2.5

  fake_fit_fraction: float = 0.02
  bad_fit_pvalue_power: float = 10.0

  dedx_resolution: float = 0.08
  dedx_min_samples: int = 4
  dedx_log_constant: float = 13.9
  dedx_saturation_beta_gamma: float = 300.0
  outer_barrel_radius_cm: float = 120.0
  forward_endcap_z_cm: float = 170.0
  backward_endcap_z_cm: float = -100.0
  top_theta_min_deg: float = 31.0
  top_theta_max_deg: float = 128.0
  top_inverse_beta_resolution: float = 0.0018
  arich_inverse_beta_resolution: float = 0.0015
  cherenkov_scattering_gev: float = 0.0064
  cherenkov_tail_fraction: float = 0.1
  cherenkov_tail_scale: float = 5.0
  cherenkov_missing_fraction: float = 0.05
  electron_eop_mean: float = 0.96
  electron_eop_resolution: float = 0.04
  electron_eop_stochastic: float = 0.02
  electron_brem_fraction: float = 0.1
  electron_brem_eop_mean: float = 0.85
  electron_brem_eop_width: float = 0.08
  ecl_mip_energy_gev: float = 0.17
  ecl_mip_width_gev: float = 0.03
  hadron_shower_fraction: float = 0.5
  hadron_shower_eop_mean: float = 0.4
  hadron_shower_eop_width: float = 0.13
  ecl_missing_fraction: float = 0.05
  klm_min_momentum_gev: float = 0.6
  klm_turn_on_gev: float = 0.15
  klm_penetration_probability: tuple[float, ...] = (
    0.001,
    0.92,
    0.03,
    0.02,
    0.005,
  )
  klm_hadron_range_mean: float = -1.5
  klm_hadron_range_width: float = 1.5

  background_rate: float = 1.0
  background_electron_fraction: float = 0.5
  background_pt_mean_gev: float = 0.1
  background_vertex_r_sigma_cm: float = 1.0
  background_vertex_z_sigma_cm: float = 10.0

  def __post_init__(self):
    problems = []
    if self.b_field_tesla <= 0:
      problems.append(f'b_field_tesla={self.b_field_tesla} must be > 0')
    radii = (
      *self.pxd_radii_cm,
      *self.svd_radii_cm,
      self.cdc_inner_radius_cm,
      self.cdc_outer_radius_cm,
    )
    if any(r <= 0 for r in radii) or any(
      b <= a for a, b in zip(radii[:-1], radii[1:], strict=False)
    ):
      problems.append(
        f'layer radii {radii} must be positive and increasing from the '
        'PXD through the SVD to the CDC'
      )
    if not 0 < self.cdc_num_layers <= 127 or not 0 < self.svd_sides <= 2:
      problems.append(
        f'cdc_num_layers={self.cdc_num_layers} must be in 1..127 and '
        f'svd_sides={self.svd_sides} in 1..2 (hit counts are int8)'
      )
    if not 0 < self.theta_min_deg < self.theta_max_deg < 180:
      problems.append(
        f'acceptance {self.theta_min_deg}..{self.theta_max_deg} deg must '
        'satisfy 0 < theta_min < theta_max < 180'
      )
    fractions = {
      'pxd_hit_efficiency': self.pxd_hit_efficiency,
      'svd_hit_efficiency': self.svd_hit_efficiency,
      'cdc_hit_efficiency': self.cdc_hit_efficiency,
      'tracking_efficiency_plateau': self.tracking_efficiency_plateau,
      'fake_fit_fraction': self.fake_fit_fraction,
      'cherenkov_tail_fraction': self.cherenkov_tail_fraction,
      'cherenkov_missing_fraction': self.cherenkov_missing_fraction,
      'electron_brem_fraction': self.electron_brem_fraction,
      'hadron_shower_fraction': self.hadron_shower_fraction,
      'ecl_missing_fraction': self.ecl_missing_fraction,
      'background_electron_fraction': self.background_electron_fraction,
      **{
        f'klm_penetration_probability[{h}]': v
        for h, v in zip(
          HYPOTHESES, self.klm_penetration_probability, strict=False
        )
      },
    }
    for name, value in fractions.items():
      if not 0.0 <= value <= 1.0:
        problems.append(f'{name}={value} must be a probability in [0, 1]')
    if len(self.klm_penetration_probability) != len(HYPOTHESES):
      problems.append(
        'klm_penetration_probability needs one value per hypothesis '
        f'{HYPOTHESES}, got {len(self.klm_penetration_probability)}'
      )
    nonnegative = {
      'pt_resolution_curvature': self.pt_resolution_curvature,
      'pt_resolution_scattering': self.pt_resolution_scattering,
      'dr_resolution_cm': self.dr_resolution_cm,
      'dz_resolution_cm': self.dz_resolution_cm,
      'ip_scattering_cm_gev': self.ip_scattering_cm_gev,
      'tracking_pt_threshold_gev': self.tracking_pt_threshold_gev,
      'background_rate': self.background_rate,
      'min_hits': self.min_hits,
    }
    positive = {
      'tracking_pt_turn_on_gev': self.tracking_pt_turn_on_gev,
      'bad_fit_pvalue_power': self.bad_fit_pvalue_power,
      'dedx_resolution': self.dedx_resolution,
      'dedx_min_samples': self.dedx_min_samples,
      'top_inverse_beta_resolution': self.top_inverse_beta_resolution,
      'arich_inverse_beta_resolution': self.arich_inverse_beta_resolution,
      'cherenkov_tail_scale': self.cherenkov_tail_scale,
      'cherenkov_scattering_gev': self.cherenkov_scattering_gev,
      'electron_eop_resolution': self.electron_eop_resolution,
      'electron_brem_eop_width': self.electron_brem_eop_width,
      'ecl_mip_width_gev': self.ecl_mip_width_gev,
      'hadron_shower_eop_width': self.hadron_shower_eop_width,
      'klm_turn_on_gev': self.klm_turn_on_gev,
      'klm_hadron_range_width': self.klm_hadron_range_width,
      'background_pt_mean_gev': self.background_pt_mean_gev,
      'outer_barrel_radius_cm': self.outer_barrel_radius_cm,
    }
    for name, value in nonnegative.items():
      if not value >= 0:
        problems.append(f'{name}={value} must be >= 0')
    for name, value in positive.items():
      if not value > 0:
        problems.append(f'{name}={value} must be > 0')
    if problems:
      raise ValueError(
        'impossible DetectorConfig: ' + '; '.join(problems) + '. Fix these '
        'fields (see the DetectorConfig docstring for sensible values).'
      )

  @property
  def layer_radii_cm(self) -> np.ndarray:
    """Radii of all layers, PXD then SVD then CDC, cm, shape [layers]."""
    width = (self.cdc_outer_radius_cm - self.cdc_inner_radius_cm) / (
      self.cdc_num_layers
    )
    cdc = self.cdc_inner_radius_cm + width * (
      np.arange(self.cdc_num_layers) + 0.5
    )
    return np.concatenate([self.pxd_radii_cm, self.svd_radii_cm, cdc])


def tracking_efficiency(pt: np.ndarray, config: DetectorConfig) -> np.ndarray:
  """Track-finding efficiency as a function of pT (before hit requirements).

  Args:
    pt: Transverse momentum, GeV, any shape.
    config: Detector settings.

  Returns:
    Efficiency in [0, plateau], the shape of pt.
  """
  excess = np.maximum(pt - config.tracking_pt_threshold_gev, 0.0)
  return config.tracking_efficiency_plateau * -np.expm1(
    -excess / config.tracking_pt_turn_on_gev
  )


def pt_resolution(
  pt: np.ndarray, beta: np.ndarray, config: DetectorConfig
) -> np.ndarray:
  """Relative resolution sigma(pT)/pT = a pT (+) b / beta, any shape."""
  return np.hypot(
    config.pt_resolution_curvature * pt,
    config.pt_resolution_scattering / beta,
  )


def impact_parameter_resolution(
  p: np.ndarray,
  beta: np.ndarray,
  sin_theta: np.ndarray,
  config: DetectorConfig,
) -> tuple[np.ndarray, np.ndarray]:
  """Resolutions of dr and dz, cm: const (+) term / (p beta sin^k theta).

  Args:
    p: Momentum, GeV, shape [n].
    beta: Velocity, shape [n].
    sin_theta: Sine of the polar angle, shape [n].
    config: Detector settings.

  Returns:
    (sigma_dr, sigma_dz), each shape [n], cm.
  """
  pbeta = np.maximum(p * beta, 1e-6)
  sin_theta = np.maximum(sin_theta, 1e-3)
  scattering = config.ip_scattering_cm_gev / pbeta
  sigma_dr = np.hypot(
    config.dr_resolution_cm, scattering / sin_theta**config.dr_sin_power
  )
  sigma_dz = np.hypot(
    config.dz_resolution_cm, scattering / sin_theta**config.dz_sin_power
  )
  return sigma_dr, sigma_dz


def _check_particles(particles) -> tuple[np.ndarray, ...]:
  """Validates the particle dict; returns (pdg, p, vertex, species)."""
  for key in ('pdg', 'p', 'production_vertex'):
    if key not in particles:
      raise ValueError(
        f'particles lacks {key!r}: expected a dict with pdg [n], p [n, 3] '
        'GeV and production_vertex [n, 3] cm'
      )
  pdg = np.asarray(particles['pdg'])
  p = np.asarray(particles['p'], np.float64)
  vertex = np.asarray(particles['production_vertex'], np.float64)
  n = pdg.shape[0] if pdg.ndim == 1 else -1
  if pdg.ndim != 1 or p.shape != (n, 3) or vertex.shape != (n, 3):
    raise ValueError(
      'particles have inconsistent shapes: pdg '
      f'{pdg.shape}, p {p.shape}, production_vertex {vertex.shape}; '
      'expected [n], [n, 3], [n, 3]'
    )
  if not np.issubdtype(pdg.dtype, np.integer):
    raise ValueError(f'pdg must be integers, found dtype {pdg.dtype}')
  for name, array in (('p', p), ('production_vertex', vertex)):
    bad = ~np.isfinite(array).all(axis=1)
    if bad.any():
      raise ValueError(
        f'{np.count_nonzero(bad)} particles have non-finite {name} (first '
        f'at index {np.flatnonzero(bad)[0]}: {array[bad][0]}); remove or '
        'fix them before reconstruction'
      )
  abs_pdg = np.abs(pdg.astype(np.int64))
  species = np.searchsorted(SPECIES_PDG, abs_pdg)
  species = np.minimum(species, len(SPECIES_PDG) - 1)
  unknown = SPECIES_PDG[species] != abs_pdg
  if unknown.any():
    raise ValueError(
      f'cannot reconstruct PDG ids {sorted(set(pdg[unknown].tolist()))}: '
      'only charged e, mu, pi, K, p (ids +-11, 13, 211, 321, 2212) make '
      'tracks; drop neutral and short-lived particles first'
    )
  return pdg.astype(np.int64), p, vertex, species


def _helix(p, vertex, charge, config):
  """Helix of each track in the solenoid field.

  Args:
    p: True momentum, GeV, shape [n, 3].
    vertex: Production point, cm, shape [n, 3].
    charge: +1 or -1, shape [n].
    config: Detector settings.

  Returns:
    Dict of shape-[n] arrays: radius R (cm), centre cx, cy (cm), distance of
    the centre from the beam line (cm), start angle psi0 of the production
    point seen from the centre, signed dr and dz at the point of closest
    approach (cm), and cot theta.
  """
  pt = np.hypot(p[:, 0], p[:, 1])
  pt_safe = np.maximum(pt, 1e-9)
  ux, uy = p[:, 0] / pt_safe, p[:, 1] / pt_safe
  radius = pt_safe / (CURVATURE * config.b_field_tesla)
  x0, y0, z0 = vertex[:, 0], vertex[:, 1], vertex[:, 2]

  # A positive track turns clockwise seen from +z (force q v x B, B along
  # +z), so the centre lies at q R (uy, -ux) from the production point.
  cx = x0 + charge * radius * uy
  cy = y0 - charge * radius * ux
  centre_dist = np.hypot(cx, cy)

  # Signed distance of closest approach, computed without cancellation:
  # |c|^2 - R^2 = |x0|^2 + 2 q R (x0 uy - y0 ux). Sign as the Belle II
  # helix parameter d0 (basf2 tracking documentation): that of the z
  # component of the angular momentum about the origin at the perigee,
  # which works out to q (|c| - R).
  lever = x0 * uy - y0 * ux
  dr = (
    charge
    * (x0**2 + y0**2 + 2 * charge * radius * lever)
    / (centre_dist + radius)
  )

  # Turning angle from the production point to the perigee, the point of
  # the circle nearest the beam line, taken in (-pi, pi]: the track is
  # extrapolated forward or backward, whichever is shorter.
  psi0 = np.arctan2(y0 - cy, x0 - cx)
  psi_perigee = np.arctan2(-cy, -cx)
  turn = _wrap(-charge * (psi_perigee - psi0))
  cot_theta = p[:, 2] / pt_safe
  dz = z0 + radius * turn * cot_theta
  return {
    'pt': pt,
    'radius': radius,
    'cx': cx,
    'cy': cy,
    'centre_dist': centre_dist,
    'psi0': psi0,
    'dr': dr,
    'dz': dz,
    'cot_theta': cot_theta,
    'z0': z0,
  }


def _wrap(angle):
  """Maps angles onto (-pi, pi]."""
  return np.pi - np.mod(np.pi - angle, 2 * np.pi)


def _crossed_layers(helix, charge, config, block=4096):
  """Which layers each track crosses on its first outgoing arc.

  The track is followed from its production point along the helix until
  it reaches its largest radius |c| + R, where it starts to curl back; a
  layer counts when the track crosses its radius on that arc within the
  layer's z extent (the acceptance cone, cut by the CDC end plates).

  NOTE: hits of the returning arc of a curler are not counted (tracking
  finds them as a separate track segment). Each layer is a cylinder whose
  z extent is the acceptance cone from the origin, cut by the CDC end
  plates; the real PXD and SVD ladders and the stepped CDC end plates are
  not modelled.

  Args:
    helix: Output of `_helix`.
    charge: +1 or -1, shape [n].
    config: Detector settings.
    block: Tracks handled at once. 4096 tracks keep each [block, layers]
      temporary at 2 MB, near the processor cache; 32768 made the whole
      chain of generation 7 % slower, with the same result.

  Returns:
    crossed: Shape [n, layers] bool.
    path_t: Transverse arc length to the last crossed layer, cm, shape [n].
  """
  rho = config.layer_radii_cm
  cot_min = 1.0 / math.tan(math.radians(config.theta_min_deg))
  cot_max = 1.0 / math.tan(math.radians(config.theta_max_deg))
  z_hi = np.minimum(rho * cot_min, config.cdc_z_forward_cm)
  z_lo = np.maximum(rho * cot_max, config.cdc_z_backward_cm)

  n = len(charge)
  two_pi = 2 * np.pi
  radius = helix['radius']
  dist = np.maximum(helix['centre_dist'], 1e-12)
  psi_c = np.arctan2(helix['cy'], helix['cx'])
  # Turning angle from the production point to the apex, the point of the
  # circle farthest from the beam line; a track produced at its apex has
  # 0 (rounding can give just below 2 pi).
  turn_apex = np.mod(-charge * (psi_c - helix['psi0']), two_pi)
  turn_apex = np.where(turn_apex > two_pi - 1e-9, 0.0, turn_apex)
  offset = dist**2 + radius**2
  inverse = 1.0 / (2 * dist * radius)
  z_step = radius * helix['cot_theta']

  crossed = np.zeros((n, len(rho)), bool)
  path_t = np.zeros(n)
  for start in range(0, n, block):
    s = slice(start, start + block)
    apex = turn_apex[s, None]

    # A point of the circle at angle alpha from the apex (seen from the
    # centre) lies at radius^2 = |c|^2 + R^2 + 2 |c| R cos(alpha); the track
    # reaches it alpha before the apex, or 2 pi - alpha before it on the
    # inward leg of a track that first passes its perigee.
    kappa = (rho**2 - offset[s, None]) * inverse[s, None]
    alpha = np.arccos(np.clip(kappa, -1.0, 1.0))
    before_apex = two_pi - alpha
    before_apex = np.where(before_apex <= apex, before_apex, alpha)
    turn = apex - before_apex
    z = helix['z0'][s, None] + z_step[s, None] * turn
    hit = (
      (np.abs(kappa) <= 1.0)
      & (alpha <= apex + 1e-9)
      & (z >= z_lo)
      & (z <= z_hi)
    )
    crossed[s] = hit
    path_t[s] = radius[s] * np.max(np.where(hit, turn, 0.0), axis=1, initial=0)
  return crossed, path_t


def _bethe(beta_gamma, config):
  """Relative dE/dx as a function of beta gamma, any shape (see config)."""
  x = np.clip(beta_gamma, 0.05, None)
  log_term = 2 * np.log(np.minimum(x, config.dedx_saturation_beta_gamma))
  return (1 + 1 / x**2) * (config.dedx_log_constant + log_term) - 1


def _log_normal_pdf(x, mean, sigma):
  """Log of the Gaussian density; broadcasts."""
  z = (x - mean) / sigma
  return -0.5 * z**2 - np.log(sigma) - 0.5 * math.log(2 * math.pi)


def _log_mixture(weight, log_a, log_b):
  """log(weight * a + (1 - weight) * b) from log a and log b."""
  with np.errstate(divide='ignore'):
    return np.logaddexp(np.log(weight) + log_a, np.log1p(-weight) + log_b)


def _pid_log_likelihoods(species, p, theta, n_cdc, reaches_outer, rng, config):
  """Draws PID measurements and evaluates them under every hypothesis.

  Each subdetector gives a measurement drawn from the true species'
  response; its likelihood under hypothesis h is the density of the same
  response model for h. Independent subdetectors add in log likelihood:
  - CDC (and SVD) dE/dx: Gaussian around the energy-loss curve, relative
    width falling with the number of CDC hits.
  - TOP (barrel) or ARICH (forward): a Cherenkov measurement expressed as
    1 / beta, Gaussian core plus a degraded fraction, for tracks reaching
    them.
  - ECL: E/p; electrons near 1, muons and non-showering hadrons at the MIP
    deposit, showering hadrons spread below 1.
  - KLM: a penetrating-track match with a probability per hypothesis that
    turns on above 0.6 GeV, and when matched a range residual.

  NOTE: the Cherenkov ring pattern and thresholds are folded into one
  Gaussian-like measurement of 1 / beta; the separations it gives follow
  the TDR's K/pi figures, not a photon-level simulation.

  Args:
    species: True hypothesis index, shape [n].
    p: True momentum, GeV, shape [n].
    theta: True polar angle, rad, shape [n].
    n_cdc: CDC hits, shape [n].
    reaches_outer: Track reaches TOP/ARICH, ECL and KLM, shape [n].
    rng: numpy Generator.
    config: Detector settings.

  Returns:
    Log likelihoods, shape [n, 5] in HYPOTHESES order.
  """
  n = len(species)
  masses = SPECIES_MASS[None, :]
  p_col = np.maximum(p, 1e-6)[:, None]
  true_mass = SPECIES_MASS[species][:, None]

  # dE/dx.
  rel = (
    config.dedx_resolution
    * np.sqrt(
      config.cdc_num_layers / np.maximum(n_cdc, config.dedx_min_samples)
    )[:, None]
  )
  dedx_true = _bethe(p_col / true_mass, config)
  dedx = dedx_true * (1 + rel * rng.standard_normal((n, 1)))
  dedx_hyp = _bethe(p_col / masses, config)
  log_l = _log_normal_pdf(dedx, dedx_hyp, rel * dedx_hyp)

  # TOP in the barrel, ARICH in the forward end cap.
  theta_deg = np.degrees(theta)
  in_top = (theta_deg >= config.top_theta_min_deg) & (
    theta_deg <= config.top_theta_max_deg
  )
  in_arich = theta_deg < config.top_theta_min_deg
  has_cherenkov = (
    reaches_outer
    & (in_top | in_arich)
    & (rng.random(n) >= config.cherenkov_missing_fraction)
  )
  sigma = np.hypot(
    np.where(
      in_top,
      config.top_inverse_beta_resolution,
      config.arich_inverse_beta_resolution,
    )[:, None],
    config.cherenkov_scattering_gev / p_col,
  )
  tail = rng.random(n) < config.cherenkov_tail_fraction
  width = sigma * np.where(tail, config.cherenkov_tail_scale, 1.0)[:, None]
  inv_beta_hyp = np.sqrt(1 + (masses / p_col) ** 2)
  inv_beta = np.sqrt(1 + (true_mass / p_col) ** 2)
  inv_beta = inv_beta + width * rng.standard_normal((n, 1))
  log_cherenkov = _log_mixture(
    config.cherenkov_tail_fraction,
    _log_normal_pdf(
      inv_beta, inv_beta_hyp, config.cherenkov_tail_scale * sigma
    ),
    _log_normal_pdf(inv_beta, inv_beta_hyp, sigma),
  )
  log_l += np.where(has_cherenkov[:, None], log_cherenkov, 0.0)

  # ECL E/p.
  mip_mean = config.ecl_mip_energy_gev / p_col
  mip_width = config.ecl_mip_width_gev / p_col
  e_width = np.hypot(
    config.electron_eop_resolution,
    config.electron_eop_stochastic / np.sqrt(p_col),
  )
  component = rng.random((n, 1))
  noise = rng.standard_normal((n, 1))
  is_e = (species == ELECTRON)[:, None]
  is_mu = (species == MUON)[:, None]
  eop_electron = np.where(
    component < config.electron_brem_fraction,
    config.electron_brem_eop_mean + config.electron_brem_eop_width * noise,
    config.electron_eop_mean + e_width * noise,
  )
  eop_hadron = np.where(
    component < config.hadron_shower_fraction,
    config.hadron_shower_eop_mean + config.hadron_shower_eop_width * noise,
    mip_mean + mip_width * noise,
  )
  eop = np.where(
    is_e,
    eop_electron,
    np.where(is_mu, mip_mean + mip_width * noise, eop_hadron),
  )
  log_mip = _log_normal_pdf(eop, mip_mean, mip_width)
  log_electron = _log_mixture(
    config.electron_brem_fraction,
    _log_normal_pdf(
      eop, config.electron_brem_eop_mean, config.electron_brem_eop_width
    ),
    _log_normal_pdf(eop, config.electron_eop_mean, e_width),
  )
  log_hadron = _log_mixture(
    config.hadron_shower_fraction,
    _log_normal_pdf(
      eop, config.hadron_shower_eop_mean, config.hadron_shower_eop_width
    ),
    log_mip,
  )
  log_ecl = np.concatenate(
    [log_electron, log_mip, log_hadron, log_hadron, log_hadron], axis=1
  )
  has_ecl = reaches_outer & (rng.random(n) >= config.ecl_missing_fraction)
  log_l += np.where(has_ecl[:, None], log_ecl, 0.0)

  # KLM: a match with probability turn_on(p) * P_h, then a range residual.
  turn_on = (
    np.where(
      p_col > config.klm_min_momentum_gev,
      -np.expm1(
        -(p_col - config.klm_min_momentum_gev) / config.klm_turn_on_gev
      ),
      0.0,
    )
    * reaches_outer[:, None]
  )
  match_prob = turn_on * np.asarray(config.klm_penetration_probability)[None]
  true_prob = np.take_along_axis(match_prob, species[:, None], axis=1)
  matched = rng.random((n, 1)) < true_prob
  range_mean = np.where(np.arange(5) == MUON, 0.0, config.klm_hadron_range_mean)
  range_width = np.where(
    np.arange(5) == MUON, 1.0, config.klm_hadron_range_width
  )
  true_range_mean = range_mean[species][:, None]
  true_range_width = range_width[species][:, None]
  residual = true_range_mean + true_range_width * rng.standard_normal((n, 1))
  with np.errstate(divide='ignore'):
    log_matched = np.log(match_prob) + _log_normal_pdf(
      residual, range_mean[None], range_width[None]
    )
    log_unmatched = np.log1p(-match_prob)
  log_l += np.where(matched, log_matched, log_unmatched)
  return log_l


def reconstruct(
  particles: dict[str, np.ndarray],
  rng: np.random.Generator,
  config: DetectorConfig = DetectorConfig(),
  *,
  block_size: int = 65536,
) -> tuple[dict[str, np.ndarray], np.ndarray]:
  """Turns true charged particles into reconstructed tracks.

  Steps, all vectorized over particles: acceptance in theta; the helix in
  the solenoid field from the true production point and momentum, giving
  the signed distance of closest approach to the beam line dr and its z,
  dz; layers crossed on the first outgoing arc and hits after layer
  efficiency; track finding with the pT turn-on and a minimum number of
  hits; pT smearing (direction kept); impact parameter smearing; decays in
  flight of pions and kaons within the tracker and the track-fit p-value;
  particle identification likelihood ratios.

  NOTE: the track direction is not smeared (the angular resolution, about
  1 mrad at 1 GeV, is far below what the features resolve) and the charge
  is always right (charge confusion matters only for curlers below the
  tracking turn-on).

  Args:
    particles: Dict with 'pdg' shape [n] int (e, mu, pi, K, p and their
      antiparticles only), 'p' shape [n, 3] true lab momentum GeV,
      'production_vertex' shape [n, 3] true production point in the lab,
      cm.
    rng: numpy Generator; the same state (and block size) gives the same
      tracks.
    config: Detector settings.
    block_size: Particles handled at once; blocks that fit the processor
      cache make large chunks faster.

  Returns:
    reco: Dict of the reconstructed columns of shards.TRACK_COLUMNS, each
      shape [n] with the schema dtype (computed for every particle; use
      `found` to keep the reconstructed ones).
    found: Shape [n] bool, in acceptance and reconstructed by tracking.

  Raises:
    ValueError: Unknown PDG ids, non-finite momenta or vertices, or
      inconsistent shapes.
  """
  pdg, p, vertex, species = _check_particles(particles)
  if block_size < 1:
    raise ValueError(f'block_size must be >= 1, got {block_size}')
  blocks = [
    _reconstruct_block(pdg[s], p[s], vertex[s], species[s], rng, config)
    for s in (
      slice(start, start + block_size)
      for start in range(0, max(len(pdg), 1), block_size)
    )
  ]
  reco = {
    name: np.concatenate([block[0][name] for block in blocks])
    for name in RECO_COLUMNS
  }
  found = np.concatenate([block[1] for block in blocks])
  return reco, found


def _reconstruct_block(pdg, p, vertex, species, rng, config):
  """`reconstruct` for one block of validated particles, shape [n]."""
  n = len(pdg)
  charge = np.sign(pdg) * SPECIES_CHARGE[species]

  # Kinematics.
  pt = np.hypot(p[:, 0], p[:, 1])
  p_mag = np.sqrt(pt**2 + p[:, 2] ** 2)
  theta = np.arctan2(pt, p[:, 2])
  mass = SPECIES_MASS[species]
  beta = p_mag / np.sqrt(p_mag**2 + mass**2)
  beta = np.maximum(beta, 1e-9)
  theta_deg = np.degrees(theta)
  in_acceptance = (
    (pt > 0)
    & (theta_deg > config.theta_min_deg)
    & (theta_deg < config.theta_max_deg)
  )

  # Geometry: helix, impact parameters, crossed layers.
  helix = _helix(p, vertex, charge, config)
  crossed, path_t = _crossed_layers(helix, charge, config)
  n_pxd_layers = len(config.pxd_radii_cm)
  n_vxd_layers = n_pxd_layers + len(config.svd_radii_cm)
  pxd_layers = crossed[:, :n_pxd_layers].sum(axis=1)
  svd_layers = crossed[:, n_pxd_layers:n_vxd_layers].sum(axis=1)
  cdc_layers = crossed[:, n_vxd_layers:].sum(axis=1)
  n_pxd = rng.binomial(pxd_layers, config.pxd_hit_efficiency)
  n_svd = rng.binomial(svd_layers * config.svd_sides, config.svd_hit_efficiency)
  n_cdc = rng.binomial(cdc_layers, config.cdc_hit_efficiency)

  # Track finding.
  found = (
    in_acceptance
    & (rng.random(n) < tracking_efficiency(pt, config))
    & (n_pxd + n_svd + n_cdc >= config.min_hits)
  )

  # Momentum: smear pT, keep the direction.
  sigma_rel = pt_resolution(pt, beta, config)
  scale = np.maximum(1 + sigma_rel * rng.standard_normal(n), 1e-3)
  p_reco = p * scale[:, None]

  # Impact parameters.
  sin_theta = np.sin(theta)
  sigma_dr, sigma_dz = impact_parameter_resolution(
    p_mag, beta, sin_theta, config
  )
  dr = helix['dr'] + sigma_dr * rng.standard_normal(n)
  dz = helix['dz'] + sigma_dz * rng.standard_normal(n)

  # Decays in flight inside the tracker and the fit p-value.
  decay_length = SPECIES_CTAU[species] * p_mag / mass
  path = path_t / np.maximum(sin_theta, 1e-6)
  decayed = rng.exponential(1.0, n) * decay_length < path
  bad_fit = decayed | (rng.random(n) < config.fake_fit_fraction)
  u = rng.random(n)
  p_value = np.where(bad_fit, u**config.bad_fit_pvalue_power, u)

  # Particle identification: reaching the outer detectors.
  forward = p[:, 2] >= 0
  endcap_z = np.where(
    forward, config.forward_endcap_z_cm, -config.backward_endcap_z_cm
  )
  needed = np.minimum(
    config.outer_barrel_radius_cm,
    endcap_z * sin_theta / np.maximum(np.abs(np.cos(theta)), 1e-9),
  )
  reaches_outer = helix['centre_dist'] + helix['radius'] >= needed
  log_l = _pid_log_likelihoods(
    species, p_mag, theta, n_cdc, reaches_outer, rng, config
  )
  log_l -= log_l.max(axis=1, keepdims=True)
  likelihood = np.exp(log_l)
  pid = likelihood / likelihood.sum(axis=1, keepdims=True)

  reco = {
    'px': p_reco[:, 0],
    'py': p_reco[:, 1],
    'pz': p_reco[:, 2],
    'charge': charge,
    'dr': dr,
    'dz': dz,
    'nPXDHits': n_pxd,
    'nSVDHits': n_svd,
    'nCDCHits': n_cdc,
    'pValue': p_value,
  }
  reco.update({name: pid[:, i] for i, name in enumerate(PID_COLUMNS)})
  reco = {
    name: np.asarray(reco[name], shards.TRACK_COLUMNS[name][0])
    for name in RECO_COLUMNS
  }
  return reco, found


def background_particles(
  num_events: int,
  rng: np.random.Generator,
  config: DetectorConfig = DetectorConfig(),
) -> tuple[dict[str, np.ndarray], np.ndarray]:
  """Draws beam background tracks for a chunk of events.

  A Poisson number with mean `background_rate` per event of low-momentum
  electrons/positrons and pions of random charge: pT the tracking threshold
  plus an exponential, cos theta uniform within the tracking acceptance,
  production points spread widely around the interaction region. Only
  particles that tracking could find are drawn; `reconstruct` then finds
  about 60 % of them with the default settings (the pT turn-on).

  Args:
    num_events: Events in the chunk.
    rng: numpy Generator.
    config: Detector settings.

  Returns:
    particles: Dict as `reconstruct` takes it, shape [m] and [m, 3].
    event_index: Shape [m] int64, sorted, the event of each track.
  """
  if num_events < 0:
    raise ValueError(f'num_events must be >= 0, got {num_events}')
  counts = rng.poisson(config.background_rate, num_events)
  event_index = np.repeat(np.arange(num_events, dtype=np.int64), counts)
  m = len(event_index)

  is_electron = rng.random(m) < config.background_electron_fraction
  sign = np.where(rng.random(m) < 0.5, 1, -1)
  pdg = sign * np.where(is_electron, 11, 211)

  pt = config.tracking_pt_threshold_gev + rng.exponential(
    config.background_pt_mean_gev, m
  )
  phi = rng.uniform(-np.pi, np.pi, m)
  cos_theta = rng.uniform(
    math.cos(math.radians(config.theta_max_deg)),
    math.cos(math.radians(config.theta_min_deg)),
    m,
  )
  sin_theta = np.sqrt(1 - cos_theta**2)
  pz = pt * cos_theta / np.maximum(sin_theta, 1e-6)
  momentum = np.stack([pt * np.cos(phi), pt * np.sin(phi), pz], axis=1)

  vertex = np.stack(
    [
      config.background_vertex_r_sigma_cm * rng.standard_normal(m),
      config.background_vertex_r_sigma_cm * rng.standard_normal(m),
      config.background_vertex_z_sigma_cm * rng.standard_normal(m),
    ],
    axis=1,
  )
  particles = {'pdg': pdg, 'p': momentum, 'production_vertex': vertex}
  return particles, event_index
