"""Tests of tagger loading, the evaluation report and the evaluate program."""

import dataclasses
import json
import pathlib
import shutil
import subprocess
import sys

import h5py
from matplotlib import image
import numpy as np
import pytest
from sklearn import metrics as sk_metrics

from flavortag_jax import report, shards, taggers

# The hand table of tests/test_metrics.py: Q = 1/3, sigma_Q = 0.176383,
# AUC of qr against q_true == 1, accuracy 1/2, unbinned Q 0.26075.
TABLE_QR = np.array([0.05, -0.05, 0.0, 0.3, -0.4, 0.45, -0.3, 0.9, -1.0, 0.5])
TABLE_Q = np.array([1, 1, -1, 1, -1, -1, 1, 1, -1, -1])


def _write_description(workdir, **fields):
  workdir.mkdir(parents=True, exist_ok=True)
  description = {'kind': 'dnn', 'name': 'dnn', 'schema_version': 1}
  description.update(fields)
  (workdir / 'tagger.json').write_text(json.dumps(description))
  return workdir


def test_load_rejects_missing_workdir(tmp_path):
  with pytest.raises(taggers.TaggerError, match='no such tagger workdir'):
    taggers.load(tmp_path / 'absent')


def test_load_rejects_missing_description(tmp_path):
  with pytest.raises(taggers.TaggerError, match='tagger.json: missing'):
    taggers.load(tmp_path)


def test_load_rejects_unreadable_description(tmp_path):
  (tmp_path / 'tagger.json').write_text('{"kind": "dnn",')
  with pytest.raises(taggers.TaggerError, match='not readable JSON'):
    taggers.load(tmp_path)


@pytest.mark.parametrize(
  'fields, match',
  [
    ({'kind': 'svm'}, "unknown tagger kind 'svm'"),
    ({'kind': None}, 'unknown tagger kind None'),
    ({'name': ''}, 'non-empty string'),
    ({'schema_version': 2}, 'schema_version 2'),
  ],
)
def test_load_rejects_bad_description(tmp_path, fields, match):
  _write_description(tmp_path, **fields)
  with pytest.raises(taggers.TaggerError, match=match):
    taggers.load(tmp_path)


def test_read_history_and_outputs(tmp_path):
  assert taggers.read_history(tmp_path) is None
  assert taggers.read_outputs(tmp_path) is None
  (tmp_path / 'history.json').write_text('{"epoch": 0}')
  with pytest.raises(taggers.TaggerError, match='list of per-epoch'):
    taggers.read_history(tmp_path)
  np.savez(tmp_path / 'outputs.npz', train_qr=TABLE_QR, train_q=TABLE_Q)
  with pytest.raises(taggers.TaggerError, match=r"\['test_q', 'test_qr'\]"):
    taggers.read_outputs(tmp_path)
  (tmp_path / 'outputs.npz').write_bytes(b'not a zip file')
  with pytest.raises(taggers.TaggerError, match='not a readable .npz'):
    taggers.read_outputs(tmp_path)


def test_unique_names_add_the_workdir_where_names_clash():
  def make(name, workdir):
    return taggers.Tagger(name, 'dnn', None, pathlib.Path(workdir), {})

  loaded = [make('dnn', 'runs/a'), make('dnn', 'runs/b'), make('cat', 'x')]
  assert report.unique_names(loaded) == ['dnn (a)', 'dnn (b)', 'cat']
  with pytest.raises(ValueError, match='cannot be told apart'):
    report.unique_names([make('dnn', 'a/run'), make('dnn', 'b/run')])


def test_trained_on_finds_the_training_folder(tmp_path):
  data_dir = tmp_path / 'data'
  data_dir.mkdir()
  # The category tagger records data_dir in tagger.json.
  described = taggers.Tagger(
    'cat', 'category', None, tmp_path, {'data_dir': str(data_dir)}
  )
  assert taggers.trained_on(described, tmp_path / 'data' / '..' / 'data')
  assert not taggers.trained_on(described, tmp_path)
  # The deep tagger records it in its run config.
  workdir = tmp_path / 'run'
  workdir.mkdir()
  configured = taggers.Tagger('dnn', 'dnn', None, workdir, {})
  assert not taggers.trained_on(configured, data_dir)
  (workdir / 'config.json').write_text(json.dumps({'data_dir': str(data_dir)}))
  assert taggers.trained_on(configured, data_dir)


def _check_png(path):
  pixels = image.imread(path)
  assert pixels.ndim == 3 and pixels[..., :3].std() > 0.05


def test_report_of_hand_made_outputs(tmp_path):
  rng = np.random.default_rng(0)
  sharper = np.clip(1.5 * TABLE_QR, -1, 1)  # a second tagger
  history = [
    {'epoch': e, 'train_loss': 0.69 - 0.01 * e, 'valid_loss': 0.69}
    for e in range(3)
  ]
  outputs = {
    'train_qr': rng.uniform(-1, 1, 200),
    'train_q': rng.choice([-1, 1], 200),
    'test_qr': rng.uniform(-1, 1, 50),
    'test_q': rng.choice([-1, 1], 50),
  }
  evaluations = [
    report.Evaluation('dnn', 'dnn', TABLE_QR, TABLE_Q, history, outputs),
    report.Evaluation('category', 'category', sharper, TABLE_Q),
  ]
  out_dir = tmp_path / 'report'
  report.write(
    out_dir,
    evaluations,
    sample='ten hand-made events',
    notes=['dnn saw these events in training.'],
  )

  found = json.loads((out_dir / 'metrics.json').read_text())
  assert list(found) == ['dnn', 'category']
  dnn = found['dnn']
  assert set(dnn) == {
    'auc',
    'q',
    'q_err',
    'q_unbinned',
    'accuracy',
    'n_events',
    'bins',
  }
  assert dnn['q'] == pytest.approx(1 / 3)
  assert dnn['q_err'] == pytest.approx(0.176383, abs=1e-6)
  assert dnn['q_unbinned'] == pytest.approx(0.26075)
  assert dnn['accuracy'] == pytest.approx(0.5)
  assert dnn['n_events'] == 10
  assert [b['r_lo'] for b in dnn['bins']] == [
    0,
    0.1,
    0.25,
    0.5,
    0.625,
    0.75,
    0.875,
  ]
  assert set(dnn['bins'][0]) == {'r_lo', 'r_hi', 'eff', 'w', 'w_err', 'dw', 'q'}
  # Bin 1 is empty: w is null in the JSON.
  assert dnn['bins'][1]['w'] is None

  text = (out_dir / 'report.md').read_text()
  assert 'ten hand-made events' in text
  assert '**Warning:** dnn saw these events in training.' in text
  # Q of the hand table in percent: 33.33 +- 17.64.
  assert '| dnn | dnn | 10 |' in text and '33.33 +- 17.64' in text
  assert '## Per r bin: category' in text
  # The empty bin [0.1, 0.25) of the dnn table.
  assert '| [0.1, 0.25) | 0.00 | - | - | 0.00 |' in text
  assert '## Overtraining check' in text

  expected = {
    'roc.png',
    'q_per_bin.png',
    'calibration.png',
    'overtraining_dnn.png',
    'loss_dnn.png',
  }
  pngs = {p.name for p in out_dir.glob('*.png')}
  assert pngs == expected
  for name in expected:
    assert f']({name})' in text
    _check_png(out_dir / name)
  # Nothing but the report files is left in the folder.
  assert {p.name for p in out_dir.iterdir()} == expected | {
    'metrics.json',
    'report.md',
  }


def test_report_keeps_plots_of_similar_names_apart(tmp_path):
  # 'dnn a' and 'dnn/a' both become the file stem dnn_a.
  outputs = {
    'train_qr': TABLE_QR,
    'train_q': TABLE_Q,
    'test_qr': TABLE_QR,
    'test_q': TABLE_Q,
  }
  report.write(
    tmp_path,
    [
      report.Evaluation('dnn a', 'dnn', TABLE_QR, TABLE_Q, outputs=outputs),
      report.Evaluation('dnn/a', 'dnn', TABLE_QR, TABLE_Q, outputs=outputs),
    ],
  )
  assert {p.name for p in tmp_path.glob('overtraining_*.png')} == {
    'overtraining_dnn_a.png',
    'overtraining_dnn_a_2.png',
  }


def test_report_rejects_different_samples(tmp_path):
  evaluations = [
    report.Evaluation('a', 'dnn', TABLE_QR, TABLE_Q),
    report.Evaluation('b', 'dnn', TABLE_QR[:5], TABLE_Q[:5]),
  ]
  with pytest.raises(ValueError, match='same events'):
    report.write(tmp_path, evaluations)
  with pytest.raises(ValueError, match='at least one'):
    report.write(tmp_path, [])


# End to end: taggers trained on the shared generated sample (seed 1),
# evaluated on a fresh sample of another seed that no tagger saw.
UNSEEN_NUM_EVENTS = 600
UNSEEN_SEED = 11
REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture(scope='module', name='dnn_workdir')
def fixture_dnn_workdir(generated_dir, tmp_path_factory):
  from experiments.configs import smoke
  from flavortag_jax import train

  config = smoke.get_config()
  config.data_dir = str(generated_dir)
  workdir = tmp_path_factory.mktemp('dnn_smoke')
  train.train_and_evaluate(config, workdir)
  return workdir


@pytest.fixture(scope='module', name='category_workdir')
def fixture_category_workdir(generated_dir, tmp_path_factory):
  from flavortag_jax import category_tagger

  workdir = tmp_path_factory.mktemp('category')
  config = category_tagger.CategoryTaggerConfig(
    num_trees=20, combiner_num_trees=20
  )
  category_tagger.train_and_evaluate(generated_dir, workdir, config)
  return workdir


@pytest.fixture(scope='module', name='unseen_dir')
def fixture_unseen_dir(tmp_path_factory):
  from flavortag_jax import generator

  out_dir = tmp_path_factory.mktemp('unseen_nunu')
  generator.generate(
    out_dir,
    UNSEEN_NUM_EVENTS,
    seed=UNSEEN_SEED,
    mode='nunu',
    events_per_shard=UNSEEN_NUM_EVENTS,
  )
  return out_dir


def _run_evaluate(*args):
  return subprocess.run(
    [sys.executable, '-m', 'experiments.evaluate', *args],
    cwd=REPO_ROOT,
    capture_output=True,
    text=True,
    timeout=300,
    check=False,
  )


def test_evaluate_program_on_unseen_events(
  dnn_workdir, category_workdir, unseen_dir, tmp_path
):
  out_dir = tmp_path / 'report'
  run = _run_evaluate(
    f'--workdir={dnn_workdir}',
    f'--workdir={category_workdir}',
    f'--data_dir={unseen_dir}',
    f'--out_dir={out_dir}',
    '--charge_symmetric',
  )
  assert run.returncode == 0, run.stderr[-3000:]

  found = json.loads((out_dir / 'metrics.json').read_text())
  dnn_name = taggers.read_description(dnn_workdir)['name']
  category_name = taggers.read_description(category_workdir)['name']
  symmetric_name = f'{dnn_name} C-sym'
  assert list(found) == [dnn_name, symmetric_name, category_name]

  # Recompute the figures independently from the taggers' outputs.
  events = shards.read_data_dir(unseen_dir)
  q_true = events.events['q_tag']
  for workdir, name in (
    (dnn_workdir, dnn_name),
    (category_workdir, category_name),
  ):
    s = found[name]
    assert s['n_events'] == UNSEEN_NUM_EVENTS
    assert len(s['bins']) == 7
    assert sum(b['eff'] for b in s['bins']) == pytest.approx(1.0)
    assert sum(b['q'] for b in s['bins']) == pytest.approx(s['q'])
    qr = taggers.load(workdir).predict(events)
    assert s['auc'] == pytest.approx(
      sk_metrics.roc_auc_score(q_true == 1, qr), abs=1e-9
    )
    # qr == 0 (an event without tracks) counts as a B0 tag.
    q_pred = np.where(qr >= 0, 1, -1)
    assert s['accuracy'] == pytest.approx(np.mean(q_pred == q_true))
    # Both taggers learned something: the smoke run reaches an AUC of
    # about 0.75 on its own test split, the category tagger more.
    assert s['auc'] > 0.65
    assert 0 < s['q_err'] < s['q']

  text = (out_dir / 'report.md').read_text()
  assert f'{UNSEEN_NUM_EVENTS} events from' in text
  for name in (dnn_name, category_name):
    assert f'## Per r bin: {name}' in text
  pngs = {p.name for p in out_dir.glob('*.png')}
  assert {
    'roc.png',
    'q_per_bin.png',
    'calibration.png',
    f'loss_{dnn_name}.png',
    f'overtraining_{dnn_name}.png',
    f'overtraining_{category_name}.png',
  } <= pngs
  for name in pngs:
    pixels = image.imread(out_dir / name)
    assert pixels[..., :3].std() > 0.05

  # The charge-symmetrized deep tagger: (f(x) - f(x flipped)) / 2, without
  # an overtraining plot (its train/test outputs were never computed).
  dnn = taggers.load(dnn_workdir)
  qr = 0.5 * (dnn.predict(events) - dnn.predict(events.charge_flipped()))
  assert found[symmetric_name]['auc'] == pytest.approx(
    sk_metrics.roc_auc_score(q_true == 1, qr), abs=1e-9
  )
  assert f'overtraining_{dnn_name}_C-sym.png' not in pngs
  assert f'{symmetric_name}: charge-symmetrized' in text


def test_charge_flipped_events_differ_only_in_charge(generated_events):
  flipped = generated_events.charge_flipped()
  np.testing.assert_array_equal(
    flipped.tracks['charge'], -generated_events.tracks['charge']
  )
  assert (generated_events.tracks['charge'] != 0).all()
  for name, column in generated_events.tracks.items():
    if name != 'charge':
      assert flipped.tracks[name] is column
  assert flipped.events is generated_events.events
  np.testing.assert_array_equal(
    flipped.charge_flipped().tracks['charge'],
    generated_events.tracks['charge'],
  )


def _net_charge(events):
  """Sum of the track charges of each event (0 without tracks)."""
  charge = np.zeros(events.num_events)
  np.add.at(charge, events.event_index(), events.tracks['charge'])
  return charge


def test_charge_symmetric_evaluation_removes_a_flavor_offset(
  generated_events, tmp_path
):
  # A tagger with a flavor offset: qr = 0.3 + 0.05 * (sum of track charges).
  # Symmetrized: ((0.3 + 0.05 S) - (0.3 - 0.05 S)) / 2 = 0.05 S.
  events = generated_events.take(np.arange(300))
  net_charge = _net_charge(events)
  assert np.abs(net_charge).max() <= 10  # no clipping in 0.3 +- 0.05 S

  def predict(e):
    return np.clip(0.3 + 0.05 * _net_charge(e), -1, 1)

  tagger = taggers.Tagger('toy', 'dnn', predict, tmp_path, {})
  plain = report.evaluate(tagger, events)
  symmetric = report.evaluate(tagger, events, charge_symmetric=True)
  np.testing.assert_allclose(plain.qr, 0.3 + 0.05 * net_charge)
  np.testing.assert_allclose(symmetric.qr, 0.05 * net_charge, atol=1e-12)
  assert symmetric.name == 'toy C-sym'
  assert symmetric.outputs is None and symmetric.history is None


def test_events_of_another_schema_are_rejected(dnn_workdir, unseen_dir):
  tagger = taggers.load(dnn_workdir)
  events = shards.read_data_dir(unseen_dir)

  foreign = dataclasses.replace(
    events, attrs={**events.attrs, 'schema_version': 2}
  )
  with pytest.raises(ValueError, match='schema version 2'):
    tagger.predict(foreign)

  tracks = {k: v for k, v in events.tracks.items() if k != 'kaonID'}
  with pytest.raises(ValueError, match='kaonID'):
    tagger.predict(dataclasses.replace(events, tracks=tracks))


def test_tagger_of_another_feature_list_is_rejected(dnn_workdir, tmp_path):
  workdir = tmp_path / 'other_features'
  shutil.copytree(dnn_workdir, workdir)
  path = workdir / 'tagger.json'
  description = json.loads(path.read_text())
  description['feature_names'] = description['feature_names'][::-1]
  path.write_text(json.dumps(description))
  with pytest.raises(ValueError, match='other features'):
    taggers.load(workdir)


def test_evaluate_program_rejects_shards_of_another_schema(
  dnn_workdir, unseen_dir, tmp_path
):
  data_dir = tmp_path / 'old_schema'
  shutil.copytree(unseen_dir, data_dir)
  for path in data_dir.glob('*.h5'):
    with h5py.File(path, 'r+') as f:
      f.attrs['schema_version'] = 0
  run = _run_evaluate(
    f'--workdir={dnn_workdir}',
    f'--data_dir={data_dir}',
    f'--out_dir={tmp_path / "report"}',
  )
  assert run.returncode != 0
  assert 'schema version 0' in run.stderr
  assert not (tmp_path / 'report').exists()
