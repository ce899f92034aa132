"""Tests of the feature builder on hand-made events, values worked by hand."""

import math

import jax
import numpy as np
import pytest

from flavortag_jax import features, shards

# Reconstructed columns of a hand-made track, in the order the tests write
# them: px, py, pz (GeV), charge, electronID, pionID, muonID, kaonID,
# protonID, nPXDHits, nSVDHits, nCDCHits, dr, dz (cm), pValue.
RAW = (
  'px',
  'py',
  'pz',
  'charge',
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


def make_events(event_tracks: list[list[tuple]]) -> shards.Events:
  """Events from per-event lists of tracks written as RAW tuples.

  Truth columns get fixed placeholder values; event e has q_tag +1 for even
  e and -1 for odd e, dt = 0.5 e ps, tag_flags = e.
  """
  counts = np.array([len(t) for t in event_tracks], np.int64)
  rows = [row for tracks in event_tracks for row in tracks]
  table = np.array(rows, np.float64).reshape(len(rows), len(RAW))
  tracks = {}
  for name, (dtype, shape, _) in shards.TRACK_COLUMNS.items():
    if name in RAW:
      tracks[name] = table[:, RAW.index(name)].astype(dtype)
    else:
      tracks[name] = np.zeros((len(rows), *shape), dtype)
  num_events = len(event_tracks)
  index = np.arange(num_events)
  events = {
    name: np.zeros((num_events, *shape), dtype)
    for name, (dtype, shape, _) in shards.EVENT_COLUMNS.items()
  }
  events['n_tracks'] = counts.astype(np.int32)
  events['q_tag'] = np.where(index % 2 == 0, 1, -1).astype(np.int8)
  events['dt'] = (0.5 * index).astype(np.float32)
  events['tag_flags'] = index.astype(np.uint32)
  return shards.Events(
    events,
    tracks,
    shards.offsets_from_counts(counts),
    {'mode': 'nunu', 'seed': 0},
  )


# CMS kinematics of a track of lab momentum a GeV transverse to the beam,
# pion mass m = 0.13957039 GeV, boost beta*gamma = 0.287:
#   E = sqrt(a^2 + m^2), pz* = -0.287 E, p* = sqrt(a^2 + pz*^2),
#   cos(theta*) = pz* / p*.
# a = 0.5: E = sqrt(0.2694799) = 0.5191145, pz* = -0.1489859,
#          p* = sqrt(0.25 + 0.0221968) = 0.5217248, cos = -0.2855641
# a = 1:   E = sqrt(1.0194799) = 1.0096930, pz* = -0.2897819,
#          p* = sqrt(1 + 0.0839736) = 1.0411405, cos = -0.2783312
# a = 1.5: E = sqrt(2.2694799) = 1.5064793, pz* = -0.4323596,
#          p* = sqrt(2.25 + 0.1869348) = 1.5610685, cos = -0.2769639
# a = 2:   E = sqrt(4.0194799) = 2.0048641, pz* = -0.5753960,
#          p* = sqrt(4 + 0.3310806) = 2.0811248, cos = -0.2764832
# a = 3:   E = sqrt(9.0194799) = 3.0032449, pz* = -0.8619313,
#          p* = sqrt(9 + 0.7429255) = 3.1213660, cos = -0.2761391
# phi* = atan2(py, px): 0 along +x, pi/2 along +y, pi along -x, -pi/2 along -y.
KIN = {
  0.5: (0.5217248, -0.2855641),
  1.0: (1.0411405, -0.2783312),
  1.5: (1.5610685, -0.2769639),
  2.0: (2.0811248, -0.2764832),
  3.0: (3.1213660, -0.2761391),
}
HALF_PI = math.pi / 2
PAD = (0.0,) * 14


def expected_row(a, phi, raw):
  """The 14 features of a transverse track of momentum a, from its RAW."""
  return (*KIN[a], phi, *raw[4:])


# Event 0: six positive tracks (the softest, 0.25 GeV, is dropped) and two
# negative ones, in shuffled order.
TRACK_A = (1, 0, 0, 1, 0.10, 0.60, 0.05, 0.20, 0.05, 2, 8, 40, 0.01, -0.02, 0.5)
TRACK_B = (0, 2, 0, -1, 0.01, 0.90, 0.02, 0.05, 0.02, 1, 6, 30, 0.02, 0.03, 0.2)
TRACK_C = (0, 3, 0, 1, 0.0, 0.10, 0.0, 0.85, 0.05, 2, 8, 50, 0.005, 0.001, 0.9)
TRACK_D = (
  -2,
  0,
  0,
  1,
  0.80,
  0.10,
  0.05,
  0.03,
  0.02,
  1,
  7,
  45,
  0.03,
  -0.01,
  0.4,
)
TRACK_E = (0.25, 0, 0, 1, 0.0, 1.0, 0.0, 0.0, 0.0, 0, 4, 10, 0.5, 0.5, 0.0)
TRACK_F = (0, -0.5, 0, 1, 0.02, 0.7, 0.18, 0.05, 0.05, 2, 8, 20, 0.1, 0.2, 0.05)
TRACK_G = (
  -1,
  0,
  0,
  -1,
  0.05,
  0.05,
  0.85,
  0.03,
  0.02,
  2,
  8,
  48,
  0.002,
  0.004,
  0.7,
)
TRACK_H = (
  1.5,
  0,
  0,
  1,
  0.03,
  0.8,
  0.07,
  0.05,
  0.05,
  2,
  8,
  42,
  0.003,
  -0.004,
  0.3,
)
EVENT_0 = [
  TRACK_A,
  TRACK_B,
  TRACK_C,
  TRACK_D,
  TRACK_E,
  TRACK_F,
  TRACK_G,
  TRACK_H,
]
EXPECTED_0 = [
  expected_row(3.0, HALF_PI, TRACK_C),  # pos1: 3 GeV
  expected_row(2.0, math.pi, TRACK_D),  # pos2: 2 GeV
  expected_row(1.5, 0.0, TRACK_H),  # pos3: 1.5 GeV
  expected_row(1.0, 0.0, TRACK_A),  # pos4: 1 GeV
  expected_row(0.5, -HALF_PI, TRACK_F),  # pos5: 0.5 GeV (0.25 GeV dropped)
  expected_row(2.0, HALF_PI, TRACK_B),  # neg1: 2 GeV
  expected_row(1.0, math.pi, TRACK_G),  # neg2: 1 GeV
  PAD,  # neg3
  PAD,  # neg4
  PAD,  # neg5
]

# Event 1 has no tracks; event 2 one negative track; event 3 two positive
# tracks of equal momentum, which keep their order in the event.
TRACK_I = (0, 1, 0, -1, 0.3, 0.3, 0.2, 0.1, 0.1, 2, 8, 33, 0.04, 0.05, 0.6)
TRACK_J = (0, 1, 0, 1, 0.2, 0.2, 0.2, 0.2, 0.2, 1, 5, 25, 0.06, 0.07, 0.8)
TRACK_K = (1, 0, 0, 1, 0.4, 0.3, 0.1, 0.1, 0.1, 2, 6, 35, 0.08, 0.09, 0.1)
EXPECTED = [
  EXPECTED_0,
  [PAD] * 10,
  [PAD] * 5 + [expected_row(1.0, HALF_PI, TRACK_I)] + [PAD] * 4,
  [
    expected_row(1.0, HALF_PI, TRACK_J),
    expected_row(1.0, 0.0, TRACK_K),
    *[PAD] * 8,
  ],
]
PRESENT_SLOTS = [
  [1, 1, 1, 1, 1, 1, 1, 0, 0, 0],
  [0] * 10,
  [0, 0, 0, 0, 0, 1, 0, 0, 0, 0],
  [1, 1, 0, 0, 0, 0, 0, 0, 0, 0],
]


@pytest.fixture
def hand_events():
  return make_events([EVENT_0, [], [TRACK_I], [TRACK_J, TRACK_K]])


def test_feature_names_order():
  assert len(features.FEATURE_NAMES) == 140
  assert len(set(features.FEATURE_NAMES)) == 140
  assert features.FEATURE_NAMES[0] == 'pos1_p_star'
  assert features.FEATURE_NAMES[13] == 'pos1_pValue'
  assert features.FEATURE_NAMES[14] == 'pos2_p_star'
  assert features.FEATURE_NAMES[70] == 'neg1_p_star'
  assert features.FEATURE_NAMES[139] == 'neg5_pValue'
  assert features.FEATURE_NAMES[3:8] == (
    'pos1_electronID',
    'pos1_pionID',
    'pos1_muonID',
    'pos1_kaonID',
    'pos1_protonID',
  )


def test_hand_made_events(hand_events):
  values, present = features.event_features(hand_events)
  expected = np.array(EXPECTED, np.float64).reshape(4, 140)
  np.testing.assert_allclose(values, expected, rtol=2e-6, atol=2e-7)
  expected_present = np.repeat(np.array(PRESENT_SLOTS, bool), 14, axis=1)
  np.testing.assert_array_equal(present, expected_present)
  assert values.dtype == np.float32 and values.shape == (4, 140)


def test_pad_tracks_layout(hand_events):
  tracks, mask = features.pad_tracks(hand_events)
  assert tracks.shape == (4, 8, 15) and mask.shape == (4, 8)
  np.testing.assert_array_equal(mask.sum(axis=1), [8, 0, 1, 2])
  # Event 3's second track is TRACK_K, in slot 1; padding is zero.
  np.testing.assert_allclose(tracks[3, 1], TRACK_K, rtol=1e-6)
  assert not tracks[1].any() and not tracks[3, 2:].any()


def test_momentum_frame_cms_changes_ranking():
  # Lab momenta 1.0 GeV along +z and 0.9 GeV along -z, both positive:
  # +z: E = 1.0096930, pz* = 1.0403696 * 1 - 0.287 * 1.0096930 = 0.7505878
  # -z: E = sqrt(0.81 + 0.0194799) = 0.9107579,
  #     pz* = -1.0403696 * 0.9 - 0.287 * 0.9107579 = -1.1977202
  # (gamma = sqrt(1 + 0.287^2) = 1.0403696). The lab ranks +z first, the CMS
  # ranks -z first.
  forward = (0, 0, 1.0, 1, 0.2, 0.2, 0.2, 0.2, 0.2, 2, 8, 40, 0.0, 0.0, 0.5)
  backward = (0, 0, -0.9, 1, 0.2, 0.2, 0.2, 0.2, 0.2, 2, 8, 40, 0.0, 0.0, 0.5)
  events = make_events([[forward, backward]])
  lab, _ = features.event_features(events, momentum_frame='lab')
  cms, _ = features.event_features(events, momentum_frame='cms')
  np.testing.assert_allclose(
    lab[0, [0, 1, 14, 15]], [0.7505878, 1, 1.1977202, -1], rtol=2e-6
  )
  np.testing.assert_allclose(
    cms[0, [0, 1, 14, 15]], [1.1977202, -1, 0.7505878, 1], rtol=2e-6
  )
  with pytest.raises(ValueError, match='momentum_frame'):
    features.event_features(events, momentum_frame='breit')


def test_chunks_and_vmap_agree(hand_events, monkeypatch):
  whole, whole_present = features.event_features(hand_events)
  # Chunks of 3 events (the last one padded): one compilation.
  traces = []

  def counted(tracks, mask, momentum_frame):
    traces.append(tracks.shape)
    return features.build_features(tracks, mask, momentum_frame)

  monkeypatch.setattr(features, 'EVENT_CHUNK', 3)
  monkeypatch.setattr(
    features,
    'build_features_jit',
    jax.jit(counted, static_argnames='momentum_frame'),
  )
  chunked, chunked_present = features.event_features(hand_events)
  assert len(traces) == 1
  np.testing.assert_array_equal(chunked, whole)
  np.testing.assert_array_equal(chunked_present, whole_present)

  # One event at a time through vmap over a leading axis of size 1.
  tracks, mask = features.pad_tracks(hand_events)
  per_event = jax.vmap(features.build_features)(tracks[:, None], mask[:, None])
  np.testing.assert_allclose(per_event[0][:, 0], whole, rtol=1e-6, atol=1e-7)


def test_pad_tracks_errors(hand_events):
  with pytest.raises(ValueError, match='max_tracks=4 but an event has 8'):
    features.pad_tracks(hand_events, max_tracks=4)

  bad = make_events([EVENT_0])
  bad.tracks['dz'][2] = np.nan
  with pytest.raises(ValueError, match="NaN or infinite.*'dz' of track 2"):
    features.event_features(bad)
  bad.tracks['dz'][2] = 0.0
  bad.tracks['px'][0] = np.inf
  with pytest.raises(ValueError, match="'px'"):
    features.pad_tracks(bad)
  bad.tracks['px'][0] = 1.0
  bad.tracks['charge'][1] = 0
  with pytest.raises(ValueError, match='charges must be'):
    features.pad_tracks(bad)
