"""Tests of the event generator: kinematics, Pythia tag decays and truth."""

import math

import numpy as np
import pytest

from flavortag_jax import generator, physics, shards, tag_decays

CATEGORY = shards.CATEGORY_INDEX


def test_cms_boost_of_the_upsilon4s():
  # Head-on 7 GeV e- on 4 GeV e+: p_z = 3 GeV, E = 11 GeV, sqrt(s) =
  # sqrt(121 - 9) = 10.583 GeV, so beta gamma = 3 / 10.583 = 0.2835; the
  # 83 mrad crossing angle raises it to the TDR's 0.287.
  head_on = 3.0 / math.sqrt(11.0**2 - 3.0**2)
  assert head_on == pytest.approx(0.2835, abs=1e-4)
  assert physics.PHYSICS.beta_gamma == pytest.approx(head_on, rel=0.015)
  # An Upsilon(4S) at rest in the CMS: lab p_z = beta gamma M = 0.287 *
  # 10.5794 = 3.0363 GeV, E = gamma M = sqrt(1 + 0.287^2) * 10.5794 =
  # 1.04037 * 10.5794 = 11.0065 GeV.
  _, _, pz, e = physics.boost_to_lab(0.0, 0.0, 0.0, 10.5794)
  assert pz == pytest.approx(3.0363, abs=1e-4)
  assert e == pytest.approx(11.0065, abs=1e-4)


@pytest.mark.parametrize(
  'cos_theta, expected_tag, expected_sig',
  [
    # p* = sqrt(5.2897^2 - 5.27966^2) = sqrt(27.98093 - 27.87481) = 0.32576
    # GeV, E* = 10.5794 / 2 = 5.2897 GeV, gamma = 1.04037.
    # theta* = 90 deg: p = (p*, 0, 0.287 * 5.2897) = (0.32576, 0, 1.51814),
    # E = 1.04037 * 5.2897 = 5.50323; |p| = sqrt(0.10612 + 2.30475) = 1.55270.
    (0.0, (0.32576, 0.0, 1.51814, 5.50323), (-0.32576, 0.0, 1.51814, 5.50323)),
    # theta* = 0: p_z = 1.04037 * 0.32576 + 1.51814 = 1.85705 forward,
    # -0.33891 + 1.51814 = 1.17924 backward; E = 5.50323 +- 0.287 * 0.32576.
    (1.0, (0.0, 0.0, 1.85705, 5.59672), (0.0, 0.0, 1.17924, 5.40974)),
  ],
)
def test_lab_momenta_of_the_b_pair(cos_theta, expected_tag, expected_sig):
  p_tag, p_sig = generator.pair_momenta(np.array([cos_theta]), np.array([0.0]))
  np.testing.assert_allclose(p_tag[0], expected_tag, atol=2e-5)
  np.testing.assert_allclose(p_sig[0], expected_sig, atol=2e-5)


def test_b_at_90_degrees_has_lab_momentum_1p553_gev():
  p_tag, _ = generator.pair_momenta(np.array([0.0]), np.array([1.0]))
  assert np.linalg.norm(p_tag[0, :3]) == pytest.approx(1.55270, abs=2e-5)


def test_decay_vertex_of_a_b_at_90_degrees():
  # beta gamma_z = 1.51814 / 5.27966 = 0.28755; c t = 0.0299792458 cm/ps *
  # 1.517 ps = 0.045478 cm; z = 0.28755 * 0.045478 = 0.013077 cm (131 um).
  p_tag, _ = generator.pair_momenta(np.array([0.0]), np.array([0.0]))
  vertex = generator.decay_vertex(p_tag, np.array([1.517]), 5.27966)
  assert vertex[0, 2] == pytest.approx(0.013077, abs=2e-6)
  # x: 0.32576 / 5.27966 * 0.045478 = 0.0028060 cm.
  assert vertex[0, 0] == pytest.approx(0.0028060, abs=2e-7)


def test_cos_theta_star_follows_one_minus_cos_squared():
  cos_theta = generator.draw_cos_theta_star(np.random.default_rng(7), 200_000)
  assert np.all(np.abs(cos_theta) <= 1.0)
  # E[c^2] = int c^2 3/4 (1 - c^2) dc = 3/4 (2/3 - 2/5) = 1/5 (uniform in
  # cos would give 1/3). Var(c^2) = 3/35 - 1/25 = 0.045714, so the error of
  # the mean is sqrt(0.045714 / 2e5) = 0.00048; allow 5 sigma.
  assert np.mean(cos_theta**2) == pytest.approx(0.2, abs=0.0024)
  assert np.mean(cos_theta) == pytest.approx(0.0, abs=0.005)
  # P(|c| < 1/2) = 2 (3/4 * 1/2 - 1/4 * 1/8) = 0.6875, error 0.00104.
  assert np.mean(np.abs(cos_theta) < 0.5) == pytest.approx(0.6875, abs=0.005)
  # Binned comparison in 20 bins with F(c) = 1/2 + 3c/4 - c^3/4: the
  # chi^2 of 19 degrees of freedom stays below 43.8 (its 99.9 % quantile).
  edges = np.linspace(-1.0, 1.0, 21)
  cdf = 0.5 + 0.75 * edges - 0.25 * edges**3
  expected = np.diff(cdf) * len(cos_theta)
  observed, _ = np.histogram(cos_theta, edges)
  assert np.sum((observed - expected) ** 2 / expected) < 43.8


def test_b_pairs_are_back_to_back_in_the_cms():
  pairs = generator.draw_b_pairs(np.random.default_rng(8), 1000, 'nunu')
  tag = np.stack(physics.boost_to_cms(*pairs.p_tag.T), -1)
  sig = np.stack(physics.boost_to_cms(*pairs.p_sig.T), -1)
  np.testing.assert_allclose(tag[:, :3], -sig[:, :3], atol=1e-9)
  np.testing.assert_allclose(np.linalg.norm(tag[:, :3], axis=1), 0.32576, 2e-5)
  np.testing.assert_allclose(
    tag[:, 2] / 0.3257551, pairs.cos_theta_star, atol=1e-6
  )
  # Vertices lie along the flight direction at (p / m) c t.
  expected = pairs.p_tag[:, :3] / 5.27966 * 0.0299792458
  np.testing.assert_allclose(
    pairs.tag_vertex, expected * pairs.decays.t_tag[:, None], rtol=1e-12
  )


def _decay_chain():
  """Two hand-made tag decays in the flat record classify_tracks reads."""
  # index: (pdg, mother)
  record = [
    # B0 -> D*- e+ nu_e; D*- -> anti-D0 pi-; anti-D0 -> K+ pi-.
    (511, -1),  # 0
    (-413, 0),  # 1
    (-11, 0),  # 2  primary lepton
    (12, 0),  # 3
    (-421, 1),  # 4
    (-211, 1),  # 5  slow pion
    (321, 4),  # 6  kaon (b -> c -> s)
    (-211, 4),  # 7  other
    # anti-B0 -> D+ rho- Lambda K0 K+ tau- (a made-up mixture of channels).
    (-511, -1),  # 8
    (411, 8),  # 9
    (-213, 8),  # 10
    (-211, 10),  # 11 fast hadron (through a light meson)
    (111, 10),  # 12
    (-321, 9),  # 13 kaon
    (211, 9),  # 14 other (pion from charm)
    (-11, 9),  # 15 secondary lepton (from a D)
    (12, 9),  # 16
    (3122, 8),  # 17
    (2212, 17),  # 18 lambda
    (-211, 17),  # 19 other
    (311, 8),  # 20
    (310, 20),  # 21
    (211, 21),  # 22 other (K_S daughter, not a fast hadron)
    (321, 8),  # 23 fast hadron (directly from the B)
    (15, 8),  # 24
    (13, 24),  # 25 secondary lepton (from a tau)
  ]
  pdg = np.array([r[0] for r in record])
  mother = np.array([r[1] for r in record])
  b_index = np.where(np.arange(len(record)) < 8, 0, 8)
  return pdg, mother, b_index


def test_classify_tracks_on_a_hand_made_decay_chain():
  pdg, mother, b_index = _decay_chain()
  charged = np.array([2, 5, 6, 7, 11, 13, 14, 15, 18, 19, 22, 23, 25])
  category, mother_pdg, grandmother_pdg = tag_decays.classify_tracks(
    pdg, mother, b_index, charged
  )
  expected = [
    'primary_lepton',
    'slow_pion',
    'kaon',
    'other',
    'fast_hadron',
    'kaon',
    'other',
    'secondary_lepton',
    'lambda',
    'other',
    'other',
    'fast_hadron',
    'secondary_lepton',
  ]
  assert [shards.TRACK_CATEGORIES[c] for c in category] == expected
  np.testing.assert_array_equal(
    mother_pdg, [511, -413, -421, -421, -213, 411, 411, 411, 3122, 3122, 310,
                 -511, 15]
  )  # fmt: skip
  # The B's own mother is the Upsilon(4S), 300553.
  np.testing.assert_array_equal(
    grandmother_pdg, [300553, 511, -413, -413, -511, -511, -511, -511, -511,
                      -511, 311, 300553, -511]
  )  # fmt: skip


def test_open_charm_and_light_meson_tables():
  charm = [411, -421, 413, 431, 10411, 20413, 4122, -4232, 4332]
  not_charm = [443, 100443, 441, 511, 321, 3122, 211, 11, 22]
  assert np.all(tag_decays.is_open_charm(charm))
  assert not np.any(tag_decays.is_open_charm(not_charm))
  light = [113, -213, 223, 313, -323, 20213, 221, 333]
  not_light = [310, 311, 130, 411, 443, 2212, 11, 511]
  assert np.all(tag_decays.is_light_meson(light))
  assert not np.any(tag_decays.is_light_meson(not_light))


@pytest.fixture(scope='module')
def pythia_decays():
  """10000 tag B decays (both flavors) from Pythia with their truth."""
  pairs = generator.draw_b_pairs(np.random.default_rng(11), 10_000, 'nunu')
  pythia = tag_decays.make_pythia(12345)
  decays = tag_decays.decay_tag_bs(
    pythia, pairs.decays.q_tag, pairs.p_tag, pairs.tag_vertex
  )
  return pairs, decays


def test_pythia_b0_decays_against_pdg_inclusive_rates(pythia_decays):
  _, decays = pythia_decays
  counts = decays.counts
  n = counts['decays']
  # B0 -> X l nu is 10.33 % per lepton flavor (PDG 2024); loose bounds.
  assert 0.09 < counts['primary_e'] / n < 0.12
  assert 0.09 < counts['primary_mu'] / n < 0.12
  # B -> K+- X is about 0.79 per B (PDG 2024, B+/B0 mixture).
  assert 0.70 < counts['charged_kaons'] / n < 0.88
  # Mean charged multiplicity of a B decay: 5.36 (CLEO, hep-ex/9907057).
  assert 4.5 < counts['charged'] / n < 6.5
  # The flags count the same primary leptons as the counts.
  events = shards.Events(
    {'tag_flags': decays.tag_flags}, {}, np.zeros(n + 1, np.int64), {}
  )
  assert events.flag('semileptonic_e').sum() == counts['primary_e']


def test_short_lived_particles_decay_and_long_lived_do_not(pythia_decays):
  _, decays = pythia_decays
  mothers = np.abs(decays.mother_pdg)
  # K_S -> pi+ pi- and Lambda -> p pi- happen inside the record...
  assert np.sum(mothers == 310) > 100
  assert np.sum((np.abs(decays.pdg) == 2212) & (mothers == 3122)) > 10
  # ...while pi, K, mu, K_L and n never decay (no track has them as mother).
  assert not np.any(np.isin(mothers, [211, 321, 13, 130, 2112]))
  assert np.all(np.isin(np.abs(decays.pdg), tag_decays.TRACK_PDGS))


def test_products_start_from_our_tag_vertex(pythia_decays):
  pairs, decays = pythia_decays
  tag_vertex = pairs.tag_vertex[decays.event_index]
  from_b = np.abs(decays.mother_pdg) == 511
  assert from_b.sum() > 5000
  np.testing.assert_allclose(
    decays.production_vertex[from_b], tag_vertex[from_b], atol=1e-9
  )
  # Products of D mesons start downstream of the B decay.
  from_d = np.isin(np.abs(decays.mother_pdg), [411, 421])
  flight = np.linalg.norm(
    decays.production_vertex[from_d] - tag_vertex[from_d], axis=1
  )
  assert np.median(flight) > 0.005  # c tau of D0 is 123 um, of D+ 312 um


def test_flavor_signatures_follow_q_tag(pythia_decays):
  pairs, decays = pythia_decays
  q_tag = pairs.decays.q_tag[decays.event_index]
  charge = np.where(
    np.isin(decays.pdg, [11, 13, -211, -321, -2212]), -1, 1
  )  # e-, mu- (pdg > 0) and pi-, K-, anti-p (pdg < 0) are negative
  # B0 (b-bar) -> c-bar l+ nu: a primary lepton has the charge of q_tag.
  primary = decays.category == CATEGORY['primary_lepton']
  assert primary.sum() > 1500
  np.testing.assert_array_equal(charge[primary], q_tag[primary])
  # b-bar -> c-bar -> s-bar: most kaons from charm are K+ for a B0; wrong
  # sign ones come from b -> c c-bar s and D -> K K.
  kaon = decays.category == CATEGORY['kaon']
  assert np.mean(charge[kaon] == q_tag[kaon]) > 0.7
  # B0 -> D*- X, D*- -> anti-D0 pi-: slow pions have the charge of -q_tag.
  slow = decays.category == CATEGORY['slow_pion']
  assert np.mean(charge[slow] == -q_tag[slow]) > 0.8


def test_generate_events_is_reproducible_and_seed_dependent():
  a = generator.generate_events(300, 3, 'nunu')
  b = generator.generate_events(300, 3, 'nunu')
  c = generator.generate_events(300, 4, 'nunu')
  for name in shards.EVENT_COLUMNS:
    np.testing.assert_array_equal(a.events[name], b.events[name])
  for name in shards.TRACK_COLUMNS:
    np.testing.assert_array_equal(a.tracks[name], b.tracks[name])
  assert not np.array_equal(a.events['t_tag'], c.events['t_tag'])


@pytest.mark.parametrize('mode', shards.MODES)
def test_generate_events_modes(mode, tmp_path):
  events = generator.generate_events(200, 5, mode)
  ev = events.events
  np.testing.assert_allclose(ev['dt'], ev['t_sig'] - ev['t_tag'], atol=1e-5)
  assert set(np.unique(ev['q_tag'])) == {-1, 1}
  if mode == 'flavor_specific':
    assert set(np.unique(ev['q_sig'])) == {-1, 1}
  else:
    assert np.all(ev['q_sig'] == 0)
  # Every event's tracks are its own: tag products or background, and the
  # file round trip keeps them.
  tracks = events.tracks
  assert np.all(tracks['mc_category'][tracks['mc_is_background']] == 0)
  assert np.all(tracks['mc_mother_pdg'][tracks['mc_is_background']] == 0)
  assert np.all(tracks['mc_mother_pdg'][~tracks['mc_is_background']] != 0)
  shards.write_shard(tmp_path / 'x.h5', events)
  assert shards.read_shard(tmp_path / 'x.h5').attrs['mode'] == mode


def test_generated_sample_flags_agree_with_track_truth(generated_events):
  events = generated_events
  assert events.num_events == 4000
  tracks = events.tracks
  event = events.event_index()
  for category, flag in (
    ('slow_pion', 'has_slow_pion'),
    ('kaon', 'has_kaon_bcs'),
  ):
    with_track = np.unique(event[tracks['mc_category'] == CATEGORY[category]])
    assert np.all(events.flag(flag)[with_track])
  # A reconstructed primary electron implies a semileptonic B -> X e nu.
  primary_e = (tracks['mc_category'] == CATEGORY['primary_lepton']) & (
    np.abs(tracks['mc_pdg']) == 11
  )
  assert np.all(events.flag('semileptonic_e')[event[primary_e]])
  # A slow pion comes from a D*+-.
  assert np.all(events.flag('has_d_star')[events.flag('has_slow_pion')])


def test_generate_events_rejects_bad_input():
  with pytest.raises(ValueError, match='unknown generation mode'):
    generator.generate_events(10, 0, 'b_to_kpi')
  with pytest.raises(ValueError, match='at least 1'):
    generator.generate_events(0, 0, 'nunu')
  with pytest.raises(ValueError, match='at least 1'):
    generator.generate_events(-5, 0, 'nunu')
  with pytest.raises(ValueError, match='non-negative'):
    generator.generate_events(10, -1, 'nunu')
  with pytest.raises(ValueError, match='1..900000000'):
    tag_decays.make_pythia(0)
