"""Tests of training: compilation, resumption, early stopping, the workdir."""

import json
import pathlib

import h5py
import jax
import numpy as np
import pytest

from experiments.configs import smoke
from flavortag_jax import pipeline, shards, train, writers


def synthetic_events(num_events, seed):
  """Events whose highest-momentum track carries the flavor in its charge.

  Each event has 2 to 7 tracks; the first is a 2 GeV 'kaon' whose charge
  equals q_tag in 85 % of the events, the others are soft and random. A
  tagger that finds this track reaches an AUC of about 0.85.
  """
  rng = np.random.default_rng(seed)
  n_tracks = rng.integers(2, 8, num_events)
  offsets = shards.offsets_from_counts(n_tracks)
  total = int(offsets[-1])
  q_tag = rng.choice(np.array([-1, 1], np.int8), num_events)
  leading = np.zeros(total, bool)
  leading[offsets[:-1]] = True

  direction = rng.normal(size=(total, 3))
  direction /= np.linalg.norm(direction, axis=1, keepdims=True)
  momentum = np.where(leading, 2.0, rng.uniform(0.1, 0.8, total))
  p = direction * momentum[:, None]
  charge = rng.choice(np.array([-1, 1], np.int8), total)
  keep = rng.random(num_events) < 0.85
  charge[offsets[:-1]] = np.where(keep, q_tag, -q_tag)
  kaon_id = np.where(leading, 0.9, rng.random(total))

  tracks = {}
  for name, (dtype, shape, _) in shards.TRACK_COLUMNS.items():
    tracks[name] = np.zeros((total, *shape), dtype)
  tracks.update(
    px=p[:, 0],
    py=p[:, 1],
    pz=p[:, 2],
    charge=charge,
    dr=rng.normal(0, 0.01, total),
    dz=rng.normal(0, 0.02, total),
    electronID=rng.random(total) * 0.1,
    muonID=rng.random(total) * 0.1,
    pionID=1.0 - kaon_id,
    kaonID=kaon_id,
    protonID=rng.random(total) * 0.1,
    nPXDHits=rng.integers(0, 3, total),
    nSVDHits=rng.integers(0, 9, total),
    nCDCHits=rng.integers(10, 57, total),
    pValue=rng.random(total),
  )
  tracks = {
    k: np.asarray(v, shards.TRACK_COLUMNS[k][0]) for k, v in tracks.items()
  }
  events = {}
  for name, (dtype, shape, _) in shards.EVENT_COLUMNS.items():
    events[name] = np.zeros((num_events, *shape), dtype)
  events.update(q_tag=q_tag, n_tracks=n_tracks.astype(np.int32))
  attrs = {'mode': 'nunu', 'seed': seed}
  return shards.Events(events, tracks, offsets, attrs)


@pytest.fixture(scope='module')
def synthetic_dir(tmp_path_factory):
  data_dir = tmp_path_factory.mktemp('synthetic')
  shards.write_shard(data_dir / 'shard_0.h5', synthetic_events(1200, seed=3))
  return data_dir


def tiny_config(data_dir, num_epochs):
  config = smoke.get_config()
  config.unlock()
  config.data_dir = str(data_dir)
  config.fractions = (0.6, 0.2, 0.2)
  config.num_bins = 32
  config.model.num_hidden_layers = 2
  config.model.width = 16
  config.num_epochs = num_epochs
  config.probe_size = 50
  config.probe_every_epochs = 1
  config.train_eval_size = 200
  return config


def test_run_compiles_once_and_writes_the_tagger(
  synthetic_dir, tmp_path, monkeypatch
):
  traces = []
  original = train.train_step

  def counting_step(*args):
    traces.append(1)  # runs only while JAX traces the step
    return original(*args)

  monkeypatch.setattr(train, 'train_step', counting_step)
  workdir = tmp_path / 'run'
  results = train.train_and_evaluate(tiny_config(synthetic_dir, 3), workdir)
  assert len(traces) == 1

  # The leading track's charge gives the flavor in 85 % of the events.
  assert results['test']['auc'] > 0.75
  history = json.loads((workdir / 'history.json').read_text())
  assert [h['epoch'] for h in history] == [0, 1, 2]
  # Learning rate 0.1 * 0.97629^epoch, momentum 0.9 + 0.09 epoch / 200.
  assert history[2]['learning_rate'] == pytest.approx(0.1 * 0.97629**2, 1e-5)
  assert history[2]['momentum'] == pytest.approx(0.9009, 1e-5)
  metrics = json.loads((workdir / 'metrics.json').read_text())
  assert metrics['test']['n_events'] == 240  # 20 % of 1200
  assert json.loads((workdir / 'tagger.json').read_text())['kind'] == 'dnn'
  with h5py.File(workdir / 'activations.h5', 'r') as f:
    assert sorted(k for k in f if k.startswith('epoch')) == [
      'epoch_0000',
      'epoch_0001',
      'epoch_0002',
    ]
    assert f['epoch_0002/layer_1'].shape == (50, 16)
    assert f['q_tag'].shape == (50,)

  # The saved tagger gives back the test outputs from the raw events.
  outputs = np.load(workdir / 'outputs.npz')
  events = shards.read_data_dir(synthetic_dir)
  test = pipeline.split_indices(events.num_events, 0, (0.6, 0.2, 0.2))['test']
  predict = train.load_predictor(workdir)
  np.testing.assert_allclose(
    predict(events.take(test)), outputs['test_qr'], atol=1e-5
  )
  np.testing.assert_array_equal(outputs['test_q'], events.events['q_tag'][test])

  # A tagger for other features, or events of another schema, is refused.
  other = dict(events.attrs, schema_version=shards.SCHEMA_VERSION + 1)
  with pytest.raises(ValueError, match='schema version'):
    predict(
      shards.Events(events.events, events.tracks, events.track_offsets, other)
    )
  tagger = json.loads((workdir / 'tagger.json').read_text())
  tagger['feature_names'] = tagger['feature_names'][::-1]
  (workdir / 'tagger.json').write_text(json.dumps(tagger))
  with pytest.raises(ValueError, match='FEATURE_NAMES'):
    train.load_predictor(workdir)


def test_resumed_run_equals_uninterrupted_run(
  synthetic_dir, tmp_path, monkeypatch
):
  straight = tmp_path / 'straight'
  train.train_and_evaluate(tiny_config(synthetic_dir, 4), straight)
  # A workdir relative to the working directory, as on the command line.
  monkeypatch.chdir(tmp_path)
  resumed = pathlib.Path('resumed')
  train.train_and_evaluate(tiny_config(synthetic_dir, 2), resumed)
  assert len(json.loads((resumed / 'history.json').read_text())) == 2
  train.train_and_evaluate(tiny_config(synthetic_dir, 4), resumed)

  for name in ('history.json', 'metrics.json'):
    assert json.loads((straight / name).read_text()) == json.loads(
      (resumed / name).read_text()
    )
  assert (straight / 'params.msgpack').read_bytes() == (
    resumed / 'params.msgpack'
  ).read_bytes()


def test_nan_loss_names_epoch_and_step():
  config = tiny_config('unused', 1)
  state = train.create_train_state(config, jax.random.key(0), num_features=4)
  x = np.ones((6, 10, 4), np.float32)
  x[3, 2, 1] = np.nan
  y = np.ones((6, 10), np.float32)
  _, step_metrics = train.train_epoch(state, x, y, jax.random.key(1))
  losses = np.asarray(step_metrics['loss'])
  assert np.all(np.isfinite(losses[:3]))
  with pytest.raises(FloatingPointError, match='epoch 7, step 3 of 6'):
    train.raise_if_not_finite(losses, epoch=7)


def test_early_stopping_by_hand():
  stopping = train.EarlyStopping()
  settings = dict(min_epochs=0, patience=2, min_relative_improvement=0.01)
  # Epoch 0: 1.0 < inf, improves. Epoch 1: 0.995 is not below
  # 1.0 * (1 - 0.01) = 0.99. Epoch 2: 0.98 < 0.99 improves. Epochs 3 and 4:
  # 0.975 and 0.971 are not below 0.98 * 0.99 = 0.9702, two in a row: stop.
  losses = [1.0, 0.995, 0.98, 0.975, 0.971]
  improved = []
  for epoch, loss in enumerate(losses):
    stopping, better = stopping.update(epoch, loss, **settings)
    improved.append(better)
  assert improved == [True, False, True, False, False]
  assert stopping.should_stop
  assert (stopping.best_epoch, stopping.best_loss) == (2, 0.98)
  # With min_epochs = 6 the same history does not stop yet.
  stopping = train.EarlyStopping()
  for epoch, loss in enumerate(losses):
    stopping, _ = stopping.update(epoch, loss, **dict(settings, min_epochs=6))
  assert not stopping.should_stop


def test_bad_config_is_rejected(tmp_path):
  config = tiny_config(tmp_path, 0)
  with pytest.raises(ValueError, match='num_epochs'):
    train.train_and_evaluate(config, tmp_path / 'run')


def test_smoke_config_learns_on_generated_events(generated_dir, tmp_path):
  config = smoke.get_config()
  config.unlock()
  config.data_dir = str(generated_dir)
  results = train.train_and_evaluate(config, tmp_path / 'smoke')
  # 600 validation events: the AUC's statistical error is about 0.02.
  assert results['valid']['auc'] > 0.6


def test_activation_writer_replaces_a_dump_and_keeps_its_probe(tmp_path):
  path = tmp_path / 'activations.h5'
  probe = {'q_tag': np.array([1, -1, 1], np.int8)}
  writer = writers.ActivationWriter(path, probe)
  writer.write(4, [np.zeros((3, 2)), np.ones((3, 2))])
  # A resumed run writes epoch 4 again: the new values replace the old.
  writers.ActivationWriter(path, probe).write(4, [np.full((3, 2), 0.5)] * 2)
  with h5py.File(path, 'r') as f:
    assert sorted(f) == ['epoch_0004', 'q_tag']
    np.testing.assert_array_equal(f['epoch_0004/layer_1'][()], 0.5)
    assert f['epoch_0004'].attrs['epoch'] == 4
  with pytest.raises(ValueError, match='probe set'):
    writers.ActivationWriter(path, {'q_tag': np.array([1, 1, 1], np.int8)})
