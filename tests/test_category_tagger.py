"""Tests of the category-based tagger on generated events."""

import json

import numpy as np
import pytest

from flavortag_jax import (
  categories,
  category_tagger,
  metrics,
  pipeline,
  shards,
  taggers,
)

# Few trees keep the tests fast; the shapes of the results do not depend on
# the tree count.
TINY = category_tagger.CategoryTaggerConfig(
  num_trees=40, combiner_num_trees=40, num_threads=1
)
NUM_TRAIN = 3000


@pytest.fixture(scope='module')
def trained(generated_events):
  """The tagger trained on the first 3000 generated events, and its figures
  on the other 1000."""
  train = generated_events.take(np.arange(NUM_TRAIN))
  test = generated_events.take(
    np.arange(NUM_TRAIN, generated_events.num_events)
  )
  tagger = category_tagger.fit(train, TINY)
  qr, table = category_tagger.evaluate_categories(tagger, test)
  return tagger, test, qr, table


def events_without_tracks(num_events):
  """Events with no track at all, shape of the schema."""
  events = {
    name: np.zeros((num_events, *shape), dtype)
    for name, (dtype, shape, _) in shards.EVENT_COLUMNS.items()
  }
  events['q_tag'][:] = 1
  tracks = {
    name: np.zeros((0, *shape), dtype)
    for name, (dtype, shape, _) in shards.TRACK_COLUMNS.items()
  }
  return shards.Events(
    events,
    tracks,
    np.zeros(num_events + 1, np.int64),
    {'schema_version': shards.SCHEMA_VERSION},
  )


def test_truth_targets_carry_the_flavor_sign(generated_events):
  # For each category, the charge of a truth target times the category's
  # flavor sign must equal q_tag (the flavor at the tag B decay, so mixing
  # plays no part). Physics dilutes some categories below 100 %:
  #   - secondary leptons and kaons also come from the charm of the W
  #     (b-bar -> c-bar c s-bar: D_s and charm from the upper vertex),
  #   - Lambda baryons likewise, from c c-bar s pairs,
  #   - Pythia's multi-body B -> D(*) n pi decays give fast pions of both
  #     charges (rho+ and rho- from the B are nearly equally frequent),
  # while primary leptons and D* slow pions are nearly pure.
  events = generated_events
  event_index = events.event_index()
  q_tag = events.events['q_tag'][event_index]
  charge = events.tracks['charge']
  # Slow-pion partners from the truth: a true slow pion scores 1.
  slow = categories.truth_targets(events.tracks, np.full(len(charge), -1))
  partner = categories.slow_pion_partner(
    charge,
    slow['SlowPion'].astype(float),
    event_index,
    events.num_events,
  )
  targets = categories.truth_targets(events.tracks, partner)
  minimum = {
    'Electron': 0.97,
    'Muon': 0.97,
    'KinLepton': 0.97,
    'SlowPion': 0.9,
    'IntermediateElectron': 0.7,
    'IntermediateMuon': 0.7,
    'IntermediateKinLepton': 0.7,
    'Kaon': 0.65,
    'KaonPion': 0.65,
    'Lambda': 0.6,
    'FastHadron': 0.6,
    'FastSlowCorrelated': 0.6,
    'MaximumPstar': 0.6,
  }
  for category in categories.CATEGORIES:
    target = targets[category.name]
    assert target.sum() >= 20, category.name
    agree = np.mean(category.flavor_sign * charge[target] == q_tag[target])
    assert agree > minimum[category.name], (category.name, agree)


def test_each_candidate_classifier_beats_random(trained):
  # AUC of each category's classifier for its truth target, on 1000 events
  # not used in training. Those with PID inputs separate their targets
  # almost perfectly in this detector; the kinematic-only ones less so.
  _, _, _, table = trained
  for name, row in table.items():
    assert row['num_targets'] >= 10, name
    assert row['candidate_auc'] > 0.6, (name, row)
  for name in ('Electron', 'Muon', 'Kaon', 'SlowPion', 'KaonPion', 'Lambda'):
    assert table[name]['candidate_auc'] > 0.9, (name, table[name])


def test_combined_q_exceeds_every_single_category(trained):
  _, test, qr, table = trained
  combined = metrics.binned_q(qr, test.events['q_tag'])
  best = max(table.values(), key=lambda row: row['q'])
  # The combination must beat the best category by more than the
  # statistical error of the difference (taken as uncorrelated: an
  # overestimate, as both use the same events).
  margin = np.hypot(combined.q_err, best['q_err'])
  assert combined.q > best['q'] + margin, (combined.q, best)


def test_events_without_tracks_get_qr_zero(trained):
  tagger, test, _, _ = trained
  mixed = shards.concatenate(
    [test.take(np.arange(5)), events_without_tracks(3)]
  )
  qr = tagger(mixed)
  assert qr.shape == (8,)
  np.testing.assert_array_equal(qr[5:], 0.0)
  assert np.all(qr[:5] != 0.0)


def test_flavor_conjugate_event_flips_qr(trained):
  # Flipping every track's charge turns the category outputs x into -x, so
  # the antisymmetric combiner must return exactly -qr.
  tagger, test, _, _ = trained
  part = test.take(np.arange(50))
  conjugate = part.take(np.arange(50))
  conjugate.tracks['charge'] = -conjugate.tracks['charge']
  np.testing.assert_allclose(tagger(conjugate), -tagger(part), atol=1e-12)


def test_training_is_reproducible(generated_events):
  config = category_tagger.CategoryTaggerConfig(
    num_trees=5, combiner_num_trees=5, num_threads=1, seed=3
  )
  train = generated_events.take(np.arange(1500))
  test = generated_events.take(np.arange(1500, 1700))
  first = category_tagger.fit(train, config)(test)
  second = category_tagger.fit(train, config)(test)
  np.testing.assert_array_equal(first, second)


def test_train_and_evaluate_writes_a_complete_workdir(
  generated_dir, generated_events, tmp_path
):
  workdir = tmp_path / 'categories'
  config = category_tagger.CategoryTaggerConfig(
    num_trees=10, combiner_num_trees=10, num_threads=1
  )
  results = category_tagger.train_and_evaluate(
    generated_dir, workdir, config, split_seed=0
  )
  description = json.loads((workdir / 'tagger.json').read_text())
  assert description['kind'] == 'category'
  assert description['name'] == 'category-based'
  assert description['schema_version'] == 1
  assert list(description['categories']) == list(categories.CATEGORY_NAMES)

  saved = json.loads((workdir / 'metrics.json').read_text())
  assert saved == json.loads(json.dumps(results))
  assert set(saved) == {'valid', 'test', 'categories'}
  assert set(saved['categories']) == set(categories.CATEGORY_NAMES)
  split = pipeline.split_indices(generated_events.num_events, seed=0)
  assert saved['test']['n_events'] == len(split['test'])
  assert saved['valid']['n_events'] == len(split['valid'])

  # The tagger as loaded by the evaluation reproduces the saved test outputs.
  outputs = taggers.read_outputs(workdir)
  test_events = generated_events.take(split['test'])
  np.testing.assert_array_equal(outputs['test_q'], test_events.events['q_tag'])
  assert len(outputs['train_qr']) == len(split['train'])
  tagger = taggers.load(workdir)
  np.testing.assert_allclose(
    tagger.predict(test_events), outputs['test_qr'], atol=1e-12
  )
  assert 'Kaon' in category_tagger.category_table(saved)

  # Events of another schema version are refused.
  test_events.attrs['schema_version'] = shards.SCHEMA_VERSION + 1
  with pytest.raises(ValueError, match='schema version'):
    tagger.predict(test_events)

  # An incomplete workdir is refused.
  (workdir / 'category_Kaon.txt').unlink()
  with pytest.raises(ValueError, match='category_Kaon.txt'):
    category_tagger.load_predictor(workdir)
  (workdir / 'tagger.json').unlink()
  with pytest.raises(ValueError, match='tagger.json'):
    category_tagger.load_predictor(workdir)


def test_bad_settings_and_too_few_events_are_refused(generated_events):
  with pytest.raises(ValueError, match='combiner_fraction'):
    category_tagger.CategoryTaggerConfig(combiner_fraction=1.0)
  with pytest.raises(ValueError, match='num_trees'):
    category_tagger.CategoryTaggerConfig(num_trees=0)
  with pytest.raises(ValueError, match='training events'):
    category_tagger.fit(generated_events.take(np.arange(1)), TINY)
  with pytest.raises(ValueError, match='targets'):
    category_tagger.fit(generated_events.take(np.arange(10)), TINY)
