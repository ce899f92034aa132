"""Tests of the category variables, truth targets and flavor signs."""

import numpy as np
import pytest

from flavortag_jax import categories, physics, shards

CAT = shards.CATEGORY_INDEX


def make_events(event_tracks, q_tag):
  """Builds shards.Events from per-event lists of track dicts.

  A track dict gives px, py, pz, charge and optionally any other column;
  the rest get neutral values (PID 0.2 each, dr = dz = 0.01 cm, category
  'other').
  """
  counts = [len(t) for t in event_tracks]
  flat = [t for tracks in event_tracks for t in tracks]
  defaults = {
    'dr': 0.01,
    'dz': 0.01,
    'electronID': 0.2,
    'muonID': 0.2,
    'pionID': 0.2,
    'kaonID': 0.2,
    'protonID': 0.2,
    'nPXDHits': 2,
    'nSVDHits': 8,
    'nCDCHits': 40,
    'pValue': 0.5,
    'mc_pdg': 211,
    'mc_mother_pdg': 0,
    'mc_grandmother_pdg': 0,
    'mc_is_background': False,
    'mc_category': CAT['other'],
  }
  tracks = {}
  for name, (dtype, shape, _) in shards.TRACK_COLUMNS.items():
    if shape:
      tracks[name] = np.zeros((len(flat), *shape), dtype)
    else:
      tracks[name] = np.array(
        [t.get(name, defaults.get(name, 0)) for t in flat], dtype
      ).reshape(len(flat))
  num_events = len(event_tracks)
  events = {
    name: np.zeros((num_events, *shape), dtype)
    for name, (dtype, shape, _) in shards.EVENT_COLUMNS.items()
  }
  events['q_tag'] = np.asarray(q_tag, np.int8)
  events['n_tracks'] = np.asarray(counts, np.int32)
  return shards.Events(
    events,
    tracks,
    shards.offsets_from_counts(np.asarray(counts)),
    {'schema_version': shards.SCHEMA_VERSION},
  )


def test_event_pairs_lists_ordered_pairs_within_events():
  # Events of 2, 0 and 3 tracks: 2 * 1 + 3 * 2 = 8 ordered pairs.
  first, second = categories.event_pairs(np.array([0, 2, 2, 5]))
  pairs = sorted(zip(first.tolist(), second.tolist(), strict=True))
  assert pairs == [
    (0, 1),
    (1, 0),
    (2, 3),
    (2, 4),
    (3, 2),
    (3, 4),
    (4, 2),
    (4, 3),
  ]


def test_cms_boost_of_a_proton_at_rest_in_the_cms():
  # A proton at rest in the CMS has lab pz = beta gamma m = 0.287 *
  # 0.93827 = 0.269284 GeV; boosted back its CMS momentum is 0 and its CMS
  # energy is its mass.
  p4 = categories.four_momentum_cms(
    np.array([0.0]), np.array([0.0]), np.array([0.269284]), 0.93827208816
  )
  np.testing.assert_allclose(p4[0, :3], 0.0, atol=2e-6)
  np.testing.assert_allclose(p4[0, 3], 0.938272, atol=2e-6)


def test_thrust_axis_of_a_hand_made_event():
  # Tracks p1 = (1, 0, 0), p2 = (-0.6, 0.2, 0), p3 = (0.1, 0.3, 0.4). The
  # thrust axis is along S = sum s_i p_i for the best signs (s1 = +1):
  #   (+,-,+): (1.7, 0.1, 0.4), |S|^2 = 2.89 + 0.01 + 0.16 = 3.06
  #   (+,-,-): (1.5, -0.5, -0.4), |S|^2 = 2.66
  #   (+,+,+): (0.5, 0.5, 0.4), |S|^2 = 0.66
  #   (+,+,-): (0.3, -0.1, -0.4), |S|^2 = 0.26
  # so n = (1.7, 0.1, 0.4) / sqrt(3.06) = (1.7, 0.1, 0.4) / 1.749286.
  # |cos| of p3 to the axis: (0.17 + 0.03 + 0.16) / (1.749286 *
  # sqrt(0.26)) = 0.36 / (1.749286 * 0.509902) = 0.403608.
  # A second event (the same tracks mirrored, p -> -p) checks that events
  # are kept apart.
  p = np.array([[1.0, 0, 0], [-0.6, 0.2, 0], [0.1, 0.3, 0.4]])
  p = np.concatenate([p, -p])
  event_index = np.array([0, 0, 0, 1, 1, 1])
  axis = categories.thrust_axis(p, event_index, 2)
  expected = np.array([1.7, 0.1, 0.4]) / 1.749286
  for e in range(2):
    np.testing.assert_allclose(np.abs(axis[e] @ expected), 1.0, atol=1e-6)

  events = make_events(
    [[{'px': x, 'py': y, 'pz': z, 'charge': 1} for x, y, z in p[:3]]], [1]
  )
  # Build the event in the lab so that its CMS momenta are p (pion mass).
  p4_cms = np.concatenate(
    [p[:3], np.sqrt(np.sum(p[:3] ** 2, 1) + 0.13957039**2)[:, None]], 1
  )
  lab = physics.boost_to_lab(*p4_cms.T)
  for k, name in enumerate(('px', 'py', 'pz')):
    events.tracks[name] = lab[k].astype(np.float32)
  variables = categories.track_variables(events)
  np.testing.assert_allclose(variables['cos_thrust'][2], 0.403608, atol=1e-4)
  np.testing.assert_allclose(variables['p_star_pi'][0], 1.0, atol=1e-5)


def test_recoil_variables_of_a_hand_made_event():
  # CMS four-momenta (px, py, pz, E): a = (2, 0, 0, 2.1),
  # b = (-0.5, 0.2, 0, 0.6), d = (0, 0, -1, 1.1), c = (0, 0, 2, 2.0).
  # Candidate c: X = a + b + d = (1.5, 0.2, -1, 3.8);
  #   M^2(X) = 3.8^2 - (2.25 + 0.04 + 1) = 14.44 - 3.29 = 11.15 GeV^2.
  #   p_miss = -(a + b + d + c) = (-1.5, -0.2, -1), |p_miss| = sqrt(3.29)
  #   = 1.813836; cos(c, p_miss) = -2 / (2 * 1.813836) = -0.551318.
  #   W direction -p_X = (-1.5, -0.2, 1): a . W = -3, b . W = 0.75 - 0.04
  #   = 0.71 > 0, d . W = -1, so only b is in the W hemisphere: e_w90 = 0.6.
  # Candidate a: X = b + c + d = (-0.5, 0.2, 1, 3.7);
  #   M^2(X) = 13.69 - (0.25 + 0.04 + 1) = 12.4 GeV^2.
  p4 = np.array(
    [
      [2.0, 0, 0, 2.1],
      [-0.5, 0.2, 0, 0.6],
      [0, 0, -1, 1.1],
      [0, 0, 2, 2.0],
    ]
  )
  event_index = np.zeros(4, np.int64)
  pairs = categories.event_pairs(np.array([0, 4]))
  recoil = categories.recoil_variables(p4, event_index, 1, pairs)
  np.testing.assert_allclose(recoil['m2_recoil'][3], 11.15, atol=1e-9)
  np.testing.assert_allclose(recoil['m2_recoil'][0], 12.4, atol=1e-9)
  np.testing.assert_allclose(recoil['p_star_miss'], 1.813836, atol=1e-6)
  np.testing.assert_allclose(recoil['cos_theta_miss'][3], -0.551318, atol=1e-6)
  np.testing.assert_allclose(recoil['e_w90'][3], 0.6, atol=1e-12)


def test_k_short_and_lambda_candidates():
  # K_S at rest in the lab decaying to pi+ pi- back to back: each pion has
  # p = sqrt((m_KS / 2)^2 - m_pi^2) = sqrt(0.248806^2 - 0.139570^2)
  # = sqrt(0.061904 - 0.019480) = 0.205971 GeV along +-x.
  # Both displaced (|dr| = 1 cm; dr is signed): one K_S. With |dr| =
  # 0.01 cm: none.
  def k_short(dr):
    return [
      {'px': 0.205971, 'py': 0.0, 'pz': 0.0, 'charge': 1, 'dr': dr},
      {'px': -0.205971, 'py': 0.0, 'pz': 0.0, 'charge': -1, 'dr': -dr},
    ]

  # Lambda at rest in the lab -> p pi-: p = sqrt((M^2 - (m_p + m_pi)^2)
  # (M^2 - (m_p - m_pi)^2)) / (2 M) with M = 1.115683:
  # M^2 = 1.244749, (m_p + m_pi)^2 = 1.077842^2 = 1.161744,
  # (m_p - m_pi)^2 = 0.798702^2 = 0.637925; p* = sqrt(0.083005 * 0.606824)
  # / 2.231366 = sqrt(0.050369) / 2.231366 = 0.224430 / 2.231366 = 0.100580.
  lam = [
    {'px': 0.0, 'py': 0.100580, 'pz': 0.0, 'charge': 1, 'dr': 2.0},
    {'px': 0.0, 'py': -0.100580, 'pz': 0.0, 'charge': -1, 'dr': 2.0},
  ]
  events = make_events([k_short(1.0), k_short(0.01), lam], [1, 1, -1])
  variables = categories.track_variables(events)
  np.testing.assert_array_equal(variables['num_k_short'], [1, 1, 0, 0, 0, 0])
  np.testing.assert_array_equal(variables['num_lambda'], [0, 0, 0, 0, 1, 1])
  # The proton candidate (track 4) pairs to M_Lambda; the K_S tracks taken
  # as protons do not (mass far off, but still the best pair). A Lambda at
  # rest in the lab has p* = beta gamma M = 0.287 * 1.115683 = 0.320201 GeV.
  np.testing.assert_allclose(variables['lambda_mass'][4], 1.115683, atol=2e-4)
  np.testing.assert_allclose(variables['lambda_p_star'][4], 0.320201, atol=1e-4)
  assert np.isnan(variables['lambda_mass'][2])


def b0_semileptonic_chain():
  """B0 -> D*- e+ nu, D*- -> anti-D0 pi-, anti-D0 -> K+ pi-, plus one
  background track."""
  return [
    {
      'px': 1.2,
      'py': 0.3,
      'pz': 0.8,
      'charge': 1,
      'mc_pdg': -11,
      'mc_mother_pdg': 511,
      'mc_category': CAT['primary_lepton'],
    },
    {
      'px': 0.05,
      'py': -0.08,
      'pz': 0.1,
      'charge': -1,
      'mc_pdg': -211,
      'mc_mother_pdg': -413,
      'mc_grandmother_pdg': 511,
      'mc_category': CAT['slow_pion'],
    },
    {
      'px': -0.6,
      'py': 0.4,
      'pz': 0.3,
      'charge': 1,
      'mc_pdg': 321,
      'mc_mother_pdg': -421,
      'mc_grandmother_pdg': -413,
      'mc_category': CAT['kaon'],
    },
    {
      'px': -0.3,
      'py': -0.5,
      'pz': 0.2,
      'charge': -1,
      'mc_pdg': -211,
      'mc_mother_pdg': -421,
      'mc_grandmother_pdg': -413,
    },
    {
      'px': 0.1,
      'py': 0.1,
      'pz': -0.1,
      'charge': 1,
      'mc_pdg': 11,
      'mc_is_background': True,
      'mc_category': CAT['primary_lepton'],
    },
  ]


def anti_b0_chain():
  """Tracks of an anti-B0 decay: a secondary mu+ (D+ -> anti-K0 mu+ nu), a
  proton from Lambda -> p pi-, a fast pi- from the W- and a pi+ from a
  rho0 of the B decay (no flavor: not a FastHadron target)."""
  return [
    {
      'px': 0.4,
      'py': 0.1,
      'pz': 0.5,
      'charge': 1,
      'mc_pdg': -13,
      'mc_mother_pdg': 411,
      'mc_category': CAT['secondary_lepton'],
    },
    {
      'px': 0.7,
      'py': 0.0,
      'pz': 0.1,
      'charge': 1,
      'mc_pdg': 2212,
      'mc_mother_pdg': 3122,
      'mc_category': CAT['lambda'],
    },
    {
      'px': -2.0,
      'py': 0.2,
      'pz': -0.3,
      'charge': -1,
      'mc_pdg': -211,
      'mc_mother_pdg': -511,
      'mc_category': CAT['fast_hadron'],
    },
    {
      'px': 0.3,
      'py': -0.4,
      'pz': 0.6,
      'charge': 1,
      'mc_pdg': 211,
      'mc_mother_pdg': 113,
      'mc_grandmother_pdg': -511,
      'mc_category': CAT['fast_hadron'],
    },
  ]


def test_truth_targets_and_flavor_signs_on_hand_made_chains():
  events = make_events([b0_semileptonic_chain(), anti_b0_chain()], [1, -1])
  event_index = events.event_index()
  # SlowPion scores that make track 1 (the slow pi-) the best negative
  # track of event 0 and track 7 (the fast pi-) the best of event 1.
  slow_score = np.array([0.1, 0.9, 0.1, 0.2, 0.3, 0.1, 0.1, 0.5, 0.05])
  partner = categories.slow_pion_partner(
    events.tracks['charge'], slow_score, event_index, 2
  )
  # Positive tracks pair with the best negative track, negative tracks with
  # the best positive one (event 0: track 4 has 0.3; event 1: tracks 5 and
  # 6 tie at 0.1, the first in order is kept by the stable sort).
  assert partner.tolist() == [1, 4, 1, 4, 1, 7, 7, 5, 7]

  targets = categories.truth_targets(events.tracks, partner)
  expected = {
    'Electron': [0],
    'IntermediateElectron': [],
    'Muon': [],
    'IntermediateMuon': [5],
    'KinLepton': [0],
    'IntermediateKinLepton': [5],
    'Kaon': [2],
    'SlowPion': [1],
    'FastHadron': [7],
    'Lambda': [6],
    'FastSlowCorrelated': [],
    'MaximumPstar': [0, 7],
    'KaonPion': [2],
  }
  assert set(targets) == set(categories.CATEGORY_NAMES)
  for name, tracks in expected.items():
    assert np.flatnonzero(targets[name]).tolist() == tracks, name
    # Every target's charge times its category sign is the tag flavor.
    category = categories.CATEGORY_BY_NAME[name]
    charge = events.tracks['charge'][tracks]
    q_tag = events.events['q_tag'][event_index[tracks]]
    np.testing.assert_array_equal(category.flavor_sign * charge, q_tag)


def test_category_qp_best_candidate_and_three_candidate_combination():
  # Event 0: candidates with p = 0.3 (q+), 0.8 (q-), 0.5 (q+); event 1:
  # none; event 2: one candidate p = 0.6 (q+).
  score = np.array([0.3, 0.8, 0.5, 0.6])
  charge = np.array([1, -1, 1, 1])
  event_index = np.array([0, 0, 0, 2])
  slow = categories.CATEGORY_BY_NAME['SlowPion']
  # SlowPion (sign -1), best candidate p = 0.8 with charge -1: qp = +0.8.
  qp = categories.category_qp(slow, score, charge, event_index, 3)
  np.testing.assert_allclose(qp, [0.8, 0.0, -0.6])
  # Kaon (sign +1), three candidates d = (-0.8, 0.5, 0.3):
  # prod(1 + d) = 0.2 * 1.5 * 1.3 = 0.39, prod(1 - d) = 1.8 * 0.5 * 0.7 =
  # 0.63; qp = (0.39 - 0.63) / (0.39 + 0.63) = -0.24 / 1.02 = -0.235294.
  kaon = categories.CATEGORY_BY_NAME['Kaon']
  qp = categories.category_qp(kaon, score, charge, event_index, 3)
  np.testing.assert_allclose(qp, [-0.235294, 0.0, 0.6], atol=1e-6)


def test_maximum_pstar_candidate_and_event_without_tracks():
  events = make_events(
    [b0_semileptonic_chain(), [], anti_b0_chain()], [1, 1, -1]
  )
  variables = categories.track_variables(events)
  # Highest p*: track 0 (p = 1.47 GeV) in event 0, track 7 (2.03 GeV) in
  # event 2.
  assert np.flatnonzero(variables['is_max_p_star']).tolist() == [0, 7]
  for name in categories.CATEGORY_NAMES:
    inputs = categories.candidate_inputs(
      categories.CATEGORY_BY_NAME[name],
      categories.add_partner_variables(variables, np.zeros(9, np.int64)),
    )
    assert inputs.shape == (9, len(categories.CATEGORY_BY_NAME[name].inputs))


def test_bad_tracks_are_rejected():
  events = make_events([b0_semileptonic_chain()], [1])
  events.tracks['px'][2] = np.nan
  with pytest.raises(ValueError, match='NaN or inf'):
    categories.track_variables(events)
  del events.tracks['kaonID']
  with pytest.raises(ValueError, match='kaonID'):
    categories.track_variables(events)
