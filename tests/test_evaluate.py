"""Tests of tagger loading, the evaluation report and the evaluate program."""

import json
import pathlib

from matplotlib import image
import numpy as np
import pytest

from flavortag_jax import report, taggers

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
  report.write(out_dir, evaluations, sample='ten hand-made events')

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


def test_report_rejects_different_samples(tmp_path):
  evaluations = [
    report.Evaluation('a', 'dnn', TABLE_QR, TABLE_Q),
    report.Evaluation('b', 'dnn', TABLE_QR[:5], TABLE_Q[:5]),
  ]
  with pytest.raises(ValueError, match='same events'):
    report.write(tmp_path, evaluations)
  with pytest.raises(ValueError, match='at least one'):
    report.write(tmp_path, [])
