"""Tests of the parametric detector response against hand-computed values."""

import dataclasses

import numpy as np
import pytest

from flavortag_jax import detector, shards

PION, KAON, ELECTRON, MUON = 211, 321, 11, 13
M_PION = 0.13957039

# Every crossed layer gives its hits.
PERFECT_HITS = dict(
  pxd_hit_efficiency=1.0, svd_hit_efficiency=1.0, cdc_hit_efficiency=1.0
)
# Resolutions switched off.
NO_SMEARING = dict(
  pt_resolution_curvature=0.0,
  pt_resolution_scattering=0.0,
  dr_resolution_cm=0.0,
  dz_resolution_cm=0.0,
  ip_scattering_cm_gev=0.0,
)


def config(**overrides):
  return dataclasses.replace(detector.DetectorConfig(), **overrides)


def particles(pdg, p, vertex=None):
  """Particle dict from per-particle lists (or one row repeated)."""
  p = np.atleast_2d(np.asarray(p, np.float64))
  pdg = np.broadcast_to(np.asarray(pdg, np.int64), (len(p),)).copy()
  if vertex is None:
    vertex = np.zeros_like(p)
  vertex = np.broadcast_to(np.asarray(vertex, np.float64), p.shape).copy()
  return {'pdg': pdg, 'p': p, 'production_vertex': vertex}


def repeated(pdg, p, n, vertex=(0.0, 0.0, 0.0)):
  return particles(pdg, np.tile(np.asarray(p, np.float64), (n, 1)), vertex)


def at_angle(pdg, p_mag, theta_deg, n, rng):
  """n particles of momentum p_mag at polar angle theta, random azimuth."""
  phi = rng.uniform(-np.pi, np.pi, n)
  theta = np.radians(theta_deg)
  p = p_mag * np.stack(
    [
      np.sin(theta) * np.cos(phi),
      np.sin(theta) * np.sin(phi),
      np.full(n, np.cos(theta)),
    ],
    axis=1,
  )
  return particles(pdg, p)


def test_reco_columns_have_the_schema_names_and_dtypes():
  rng = np.random.default_rng(0)
  reco, found = detector.reconstruct(
    particles([PION, -KAON, ELECTRON], [[1, 0, 0], [0, 1, 1], [0.3, 0.2, 0]]),
    rng,
  )
  expected = {
    k: v[0] for k, v in shards.TRACK_COLUMNS.items() if not k.startswith('mc_')
  }
  assert set(reco) == set(expected)
  for name, dtype in expected.items():
    assert reco[name].dtype == np.dtype(dtype), name
    assert reco[name].shape == (3,), name
  assert found.dtype == bool and found.shape == (3,)


def test_charge_follows_the_pdg_sign_convention():
  # e- is +11 and mu- is +13 (negative); pi+, K+, p are positive ids.
  pdg = [11, -11, 13, -13, 211, -211, 321, -321, 2212, -2212]
  reco, _ = detector.reconstruct(
    particles(pdg, [[1.0, 0.0, 0.0]] * len(pdg)), np.random.default_rng(0)
  )
  np.testing.assert_array_equal(
    reco['charge'], [-1, 1, -1, 1, 1, -1, 1, -1, 1, -1]
  )


def test_impact_parameters_of_a_track_at_its_perigee():
  # Produced at (0.1, 0, 0.2) cm moving along +y: the production point is
  # already the point of the helix closest to the z axis (the circle's
  # centre lies on the x axis), so dr = 0.1 cm and dz = 0.2 cm for either
  # charge. Belle II sign: angular momentum x py - y px = 0.1 py, positive
  # for p along +y, negative along -y.
  cfg = config(**NO_SMEARING)
  reco, _ = detector.reconstruct(
    particles(
      [PION, -PION, PION],
      [[0.0, 1.0, 0.5], [0.0, 1.0, 0.5], [0.0, -1.0, 0.5]],
      (0.1, 0.0, 0.2),
    ),
    np.random.default_rng(0),
    cfg,
  )
  np.testing.assert_allclose(reco['dr'], [0.1, 0.1, -0.1], atol=1e-6)
  np.testing.assert_allclose(reco['dz'], [0.2, 0.2, 0.2], atol=1e-6)


def test_impact_parameters_of_a_radial_track_follow_the_helix():
  # pi+ produced at (5, 0, 0) cm moving radially with p = (0.45, 0, 0.45).
  # A straight line would give dr = 0; the helix does not:
  #   R = pT / (0.299792458 * 1.5 T) m = 0.45 / 0.0044968869 cm = 100.0692 cm
  #   centre c = (5, -R) (positive tracks turn clockwise), |c| =
  #   sqrt(25 + 100.0692^2) = 100.1941 cm, dr = |c| - R = +0.1248 cm
  #   (positive: the perigee lies just left of the top of the circle,
  #   where the track moves along +x, so x py - y px > 0).
  #   The perigee lies an angle atan(5 / R) = 0.049923 rad before the
  #   start: arc -R * 0.049923 = -4.9958 cm, times cot(theta) = 1, so
  #   dz = 0 - 4.9958 = -4.9958 cm.
  cfg = config(**NO_SMEARING)
  reco, _ = detector.reconstruct(
    particles(PION, [[0.45, 0.0, 0.45]], (5.0, 0.0, 0.0)),
    np.random.default_rng(0),
    cfg,
  )
  np.testing.assert_allclose(reco['dr'], [0.12484], atol=2e-5)
  np.testing.assert_allclose(reco['dz'], [-4.9958], atol=2e-4)


def test_hits_of_a_stiff_track_from_beyond_the_pxd():
  # Produced at r = 3 cm moving tangentially (its perigee): it never comes
  # inside 3 cm, so it misses both PXD layers (1.4, 2.2 cm) and crosses
  # all 4 SVD layers (2 strip sides each: 8 hits) and all 56 CDC layers
  # (pT = 5 GeV: R = 11.1 m, theta = 90 degrees so no end plate).
  # The same from r = 3 cm moving radially outward (a K_S daughter): its
  # circle passes near the beam line, but only behind the production
  # point, so again no PXD hits. From the origin it crosses every layer:
  # 2 + 8 + 56.
  cfg = config(**PERFECT_HITS)
  reco, _ = detector.reconstruct(
    particles(
      PION,
      [[0.0, 5.0, 0.0], [5.0, 0.0, 0.0], [0.0, 5.0, 0.0]],
      [[3.0, 0, 0], [3.0, 0, 0], [0, 0, 0]],
    ),
    np.random.default_rng(0),
    cfg,
    block_size=2,
  )
  np.testing.assert_array_equal(reco['nPXDHits'], [0, 0, 2])
  np.testing.assert_array_equal(reco['nSVDHits'], [8, 8, 8])
  np.testing.assert_array_equal(reco['nCDCHits'], [56, 56, 56])


def test_a_track_produced_moving_inward_crosses_inner_layers():
  # Produced at (10, 0, 0) cm moving along -x with pT = 5 GeV (R = 11.1 m,
  # nearly straight) and pz = 2.25 GeV (cot theta = 0.45): it passes
  # within 0.05 cm of the beam line, crossing both PXD layers and the SVD
  # layers at 3.9 and 8.0 cm on the way in; on the way out it crosses all
  # 4 SVD layers and the 56 CDC layers. Each layer counts once: 2, 4 * 2 =
  # 8, 56. The inner PXD layer is met on the way in, after 10 - 1.4 =
  # 8.6 cm, at z = 0.45 * 8.6 = 3.87 cm, inside its extent z < 1.4 cm *
  # cot(17 deg) = 4.58 cm (on the way out, after 11.4 cm, z would be
  # 5.13 cm, outside).
  cfg = config(**PERFECT_HITS)
  reco, _ = detector.reconstruct(
    particles(PION, [[-5.0, 0.0, 2.25]], (10.0, 0.0, 0.0)),
    np.random.default_rng(0),
    cfg,
  )
  assert reco['nPXDHits'][0] == 2
  assert reco['nSVDHits'][0] == 8
  assert reco['nCDCHits'][0] == 56


def test_a_curling_track_stops_at_twice_its_radius():
  # pT = 0.15 GeV from the origin, theta = 90 degrees:
  #   R = 0.15 / 0.0044968869 = 33.356 cm, largest radius 2R = 66.713 cm.
  # CDC layer i sits at 16 + (i + 0.5) * 97 / 56 cm: layer 28 at
  # 65.366 cm is reached, layer 29 at 67.098 cm is not, so 29 CDC layers
  # (i = 0..28); the PXD and SVD are all inside: 2 and 8 hits.
  cfg = config(**PERFECT_HITS)
  reco, _ = detector.reconstruct(
    particles(PION, [[0.15, 0.0, 0.0]]), np.random.default_rng(0), cfg
  )
  assert reco['nPXDHits'][0] == 2
  assert reco['nSVDHits'][0] == 8
  assert reco['nCDCHits'][0] == 29


def test_acceptance_edges():
  # 17 < theta < 150 degrees. Stiff tracks (p = 3 GeV) with full tracking
  # efficiency: 16.5 and 150.5 degrees are lost, 17.5 and 149.5 found
  # (at 17.5 degrees the track still crosses the CDC up to r = 158.3 cm *
  # tan(17.5 deg) = 49.9 cm, plenty of hits).
  cfg = config(tracking_efficiency_plateau=1.0, **PERFECT_HITS)
  angles = np.radians([16.5, 17.5, 149.5, 150.5])
  p = 3.0 * np.stack(
    [np.sin(angles), np.zeros(4), np.cos(angles)],
    axis=1,
  )
  _, found = detector.reconstruct(
    particles(PION, p), np.random.default_rng(0), cfg
  )
  np.testing.assert_array_equal(found, [False, True, True, False])


def test_tracking_efficiency_turn_on():
  # efficiency = 0.9 * (1 - exp(-(pT - 0.05) / 0.05)):
  #   pT = 0.04 GeV: 0; pT = 0.10 GeV: 0.9 * (1 - e^-1) = 0.5689;
  #   pT = 1 GeV: 0.9 * (1 - e^-19) = 0.9000.
  # 20000 tracks each: binomial error <= 0.0035.
  cfg = config(**PERFECT_HITS)
  rng = np.random.default_rng(1)
  n = 20000
  fractions = []
  for pt in (0.04, 0.10, 1.0):
    _, found = detector.reconstruct(repeated(PION, [pt, 0, 0], n), rng, cfg)
    fractions.append(found.mean())
  assert fractions[0] == 0.0
  assert fractions[1] == pytest.approx(0.5689, abs=0.015)
  assert fractions[2] == pytest.approx(0.9000, abs=0.015)


@pytest.mark.parametrize(
  'pt, expected',
  [
    # beta = 2 / sqrt(4 + 0.13957^2) = 0.997574;
    # sqrt((0.0011 * 2)^2 + (0.0025 / 0.997574)^2) = 0.0033347.
    (2.0, 0.0033347),
    # beta = 0.3 / sqrt(0.09 + 0.13957^2) = 0.906680;
    # sqrt((0.0011 * 0.3)^2 + (0.0025 / 0.906680)^2) = 0.0027770.
    (0.3, 0.0027770),
  ],
)
def test_momentum_resolution_width(pt, expected):
  # 20000 tracks: the relative error of a standard deviation is
  # 1 / sqrt(2 n) = 0.5 %, so 3 % is a six-sigma band.
  n = 20000
  reco, _ = detector.reconstruct(
    repeated(PION, [pt, 0, 0], n), np.random.default_rng(2)
  )
  pt_reco = np.hypot(reco['px'], reco['py'])
  ratio = pt_reco / pt
  assert np.std(ratio - 1) == pytest.approx(expected, rel=0.03)
  assert abs(np.mean(ratio - 1)) < 5 * expected / np.sqrt(n)
  # Direction kept: py = 0 and pz = 0 stay 0.
  assert np.all(reco['py'] == 0) and np.all(reco['pz'] == 0)


def test_impact_parameter_resolution():
  # Pions, p = 1 GeV at theta = 90 degrees from the origin:
  #   beta = 1 / sqrt(1 + 0.13957^2) = 0.990400, p beta = 0.990400 GeV;
  #   sigma_dr = sqrt(0.0012^2 + (0.0020 / 0.9904)^2) = 0.0023490 cm,
  #   sigma_dz = sqrt(0.0018^2 + (0.0020 / 0.9904)^2) = 0.0027052 cm.
  n = 20000
  reco, _ = detector.reconstruct(
    repeated(PION, [1.0, 0, 0], n), np.random.default_rng(3)
  )
  assert np.std(reco['dr']) == pytest.approx(0.0023490, rel=0.03)
  assert np.std(reco['dz']) == pytest.approx(0.0027052, rel=0.03)


def test_decays_in_flight_pile_p_values_at_zero():
  # p = 0.5 GeV at theta = 90 degrees from the origin: R = 111.188 cm, and
  # the last CDC layer at 16 + 55.5 * 97 / 56 = 112.134 cm is reached
  # after an arc of 2 R asin(112.134 / (2 R)) = 117.530 cm.
  # Kaon: decay length c tau beta gamma = 371.2 * 0.5 / 0.493677 =
  #   375.954 cm, P(decay) = 1 - exp(-117.530 / 375.954) = 0.26847.
  # Pion: 780.45 * 0.5 / 0.13957 = 2795.90 cm, P(decay) = 0.041165.
  # Electron: stable, P(decay) = 0.
  # With no other bad fits, P(pValue < 0.01) = P(decay) * 0.01^(1/10) +
  # (1 - P(decay)) * 0.01: kaon 0.26847 * 0.630957 + 0.73153 * 0.01 =
  # 0.17671; pion 0.035562; electron 0.01.
  cfg = config(fake_fit_fraction=0.0)
  rng = np.random.default_rng(4)
  n = 20000
  for pdg, expected in ((KAON, 0.17671), (PION, 0.035562), (ELECTRON, 0.01)):
    reco, _ = detector.reconstruct(repeated(pdg, [0.5, 0, 0], n), rng, cfg)
    fraction = np.mean(reco['pValue'] < 0.01)
    assert fraction == pytest.approx(expected, abs=0.009), pdg
    assert np.all((reco['pValue'] >= 0) & (reco['pValue'] <= 1))


def test_pid_ratios_are_probabilities():
  rng = np.random.default_rng(5)
  n = 5000
  pdg = rng.choice([11, -13, 211, -321, 2212], n)
  p_mag = rng.uniform(0.05, 5.0, n)
  sample = at_angle(pdg, 1.0, 60.0, n, rng)
  sample['p'] *= p_mag[:, None]
  reco, _ = detector.reconstruct(sample, rng)
  pid = np.stack([reco[c] for c in detector.PID_COLUMNS], axis=1)
  assert np.all((pid >= 0) & (pid <= 1))
  np.testing.assert_allclose(pid.sum(axis=1), 1.0, atol=1e-5)


def _ids(pdg, p_mag, theta_deg, column, seed, n=4000):
  rng = np.random.default_rng(seed)
  reco, found = detector.reconstruct(
    at_angle(pdg, p_mag, theta_deg, n, rng), rng
  )
  return reco[column][found]


def test_kaon_pion_separation_in_the_barrel():
  # TOP and dE/dx at 1 GeV, theta = 90 degrees: the design values give K/pi
  # separation above 15 sigma except for the 10 % of degraded and 5 % of
  # missing Cherenkov measurements, so kaons sit near 1 and pions near 0
  # (TDR: about 90 % kaon efficiency at a few % pion fake rate).
  kaon = _ids(KAON, 1.0, 90.0, 'kaonID', 6)
  pion = _ids(PION, 1.0, 90.0, 'kaonID', 7)
  assert kaon.mean() > 0.8
  assert pion.mean() < 0.2
  assert np.mean(kaon > 0.5) > 0.85
  assert np.mean(pion > 0.5) < 0.05

  # At 3.5 GeV TOP still separates: Delta(1 / beta) = (m_K^2 - m_pi^2) /
  # (2 p^2) = (0.24372 - 0.01948) / 24.5 = 0.009153, sigma = sqrt(0.0018^2
  # + (0.0064 / 3.5)^2) = 0.002566, so 3.6 sigma.
  kaon = _ids(KAON, 3.5, 90.0, 'kaonID', 16)
  pion = _ids(PION, 3.5, 90.0, 'kaonID', 17)
  assert np.mean(kaon > 0.5) > 0.8
  assert np.mean(pion > 0.5) < 0.1


def test_electron_id_efficiency_and_pion_fake_rate():
  # E/p alone: 90 % of electrons in the core near E/p = 0.96, the rest in
  # a radiative tail or without an ECL cluster; dE/dx adds to it.
  # Physics Book: about 0.9 efficiency, pion fake rate below 1 % above
  # 1 GeV.
  for p_mag in (1.0, 2.5):
    electron = _ids(ELECTRON, p_mag, 70.0, 'electronID', 8)
    pion = _ids(PION, p_mag, 70.0, 'electronID', 9, n=20000)
    assert np.mean(electron > 0.5) > 0.88, p_mag
    assert np.mean(pion > 0.5) < 0.01, p_mag


def test_muon_id_only_above_the_klm_threshold():
  # Above 1 GeV the KLM match gives about 0.9 efficiency at a few % pion
  # fakes; at 0.4 GeV muons do not reach the KLM and muons and pions are
  # told apart only weakly (dE/dx and Cherenkov within about 1.5 sigma).
  muon = _ids(MUON, 1.5, 70.0, 'muonID', 10)
  pion = _ids(PION, 1.5, 70.0, 'muonID', 11)
  assert np.mean(muon > 0.5) > 0.85
  assert np.mean(pion > 0.5) < 0.05
  slow_muon = _ids(MUON, 0.4, 70.0, 'muonID', 12)
  slow_pion = _ids(PION, 0.4, 70.0, 'muonID', 13)
  assert np.mean(slow_muon > 0.5) < 0.85
  assert np.mean(slow_pion > 0.5) > 0.1


def test_same_seed_same_tracks():
  rng = np.random.default_rng(14)
  sample = at_angle(rng.choice([11, 211, -321], 500), 1.2, 80.0, 500, rng)
  first, found_first = detector.reconstruct(sample, np.random.default_rng(3))
  second, found_second = detector.reconstruct(sample, np.random.default_rng(3))
  np.testing.assert_array_equal(found_first, found_second)
  for name in first:
    np.testing.assert_array_equal(first[name], second[name])


def test_background_rate_and_shape():
  # Poisson mean 1.0 per event over 20000 events: error 0.007.
  cfg = config(background_rate=1.0)
  rng = np.random.default_rng(15)
  bg, event_index = detector.background_particles(20000, rng, cfg)
  assert event_index.dtype == np.int64
  assert np.all(np.diff(event_index) >= 0)
  assert len(event_index) / 20000 == pytest.approx(1.0, abs=0.03)
  assert set(np.abs(bg['pdg']).tolist()) <= {11, 211}
  positive = np.mean(bg['pdg'] * np.where(np.abs(bg['pdg']) == 11, -1, 1) > 0)
  assert positive == pytest.approx(0.5, abs=0.03)
  # Wide production points: reconstructed |dr| far above the 20 um of
  # tracks from the interaction point.
  reco, found = detector.reconstruct(bg, rng, cfg)
  assert np.median(np.abs(reco['dr'][found])) > 0.2

  cfg = config(background_rate=2.5)
  _, event_index = detector.background_particles(4000, rng, cfg)
  assert len(event_index) / 4000 == pytest.approx(2.5, abs=0.1)


def test_empty_input():
  reco, found = detector.reconstruct(
    particles(np.zeros(0, np.int64), np.zeros((0, 3))), np.random.default_rng(0)
  )
  assert found.shape == (0,)
  assert all(v.shape == (0,) for v in reco.values())


def test_unknown_pdg_is_rejected():
  with pytest.raises(ValueError, match='PDG ids \\[22\\]'):
    detector.reconstruct(
      particles([211, 22], [[1, 0, 0], [1, 0, 0]]), np.random.default_rng(0)
    )


def test_nan_momentum_is_rejected():
  with pytest.raises(ValueError, match='non-finite p'):
    detector.reconstruct(
      particles([211, 211], [[1, 0, 0], [np.nan, 0, 0]]),
      np.random.default_rng(0),
    )


def test_inconsistent_shapes_are_rejected():
  sample = particles([211, 211], [[1, 0, 0], [1, 0, 0]])
  sample['production_vertex'] = np.zeros((3, 3))
  with pytest.raises(ValueError, match='inconsistent shapes'):
    detector.reconstruct(sample, np.random.default_rng(0))


def test_impossible_config_is_rejected():
  with pytest.raises(ValueError, match='background_rate'):
    config(background_rate=-1.0)
  with pytest.raises(ValueError, match='cdc_hit_efficiency'):
    config(cdc_hit_efficiency=1.5)
  with pytest.raises(ValueError, match='increasing'):
    config(svd_radii_cm=(3.9, 8.0, 10.4, 20.0))
