"""Tests of vmapped sweeps: equality with single runs, masks, groups, output."""

import json

import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.configs import smoke, sweep_depth
from flavortag_jax import pipeline, sweeps, train


def noisy_dataset(num_events: int, seed: int) -> pipeline.Dataset:
  """Uniform features in [-1, 1]; the label is sign(feature 0), flipped for
  30 % of the events, so no tagger reaches a cross-entropy below the
  entropy of the flip, -0.3 ln 0.3 - 0.7 ln 0.7 = 0.611."""
  rng = np.random.default_rng(seed)
  x = rng.uniform(-1.0, 1.0, (num_events, 140)).astype(np.float32)
  flip = rng.random(num_events) < 0.3
  q_tag = np.where((x[:, 0] > 0) != flip, 1, -1).astype(np.int8)
  return pipeline.Dataset(
    features=jnp.asarray(x),
    labels=jnp.asarray(pipeline.labels_from_q(q_tag)),
    q_tag=q_tag,
    q_sig=np.zeros(num_events, np.int8),
    dt=np.zeros(num_events, np.float32),
    tag_flags=np.zeros(num_events, np.uint32),
    event_index=np.arange(num_events),
  )


def tiny_config():
  config = smoke.get_config()
  config.model.width = 8
  config.num_epochs = 3
  config.batch_size = 20
  config.eval_batch_size = 256
  return config


def count_epoch_traces(monkeypatch) -> list[int]:
  """Counts how often train.train_epoch is traced (once per compilation)."""
  traces = []
  original = train.train_epoch

  def counted(*args):
    traces.append(1)
    return original(*args)

  monkeypatch.setattr(train, 'train_epoch', counted)
  return traces


def test_model_k_of_a_sweep_equals_the_single_run(generated_dir, tmp_path):
  config = smoke.get_config()
  config.data_dir = str(generated_dir)
  config.num_epochs = 3
  config.probe_every_epochs = 0
  config.log_histograms_every_epochs = 0
  config.checkpoint_every_epochs = 0
  # Decays large enough that the three models clearly differ in 3 epochs.
  points = sweeps.sweep_points(config, 'weight_decay', [0.0, 3e-3, 3e-2])
  splits = pipeline.load_splits(
    generated_dir,
    seed=config.split_seed,
    fractions=tuple(config.fractions),
    num_bins=config.num_bins,
  )
  results = sweeps.train_group(
    [p.config for p in points],
    splits.train,
    splits.valid,
    shuffle_key=jax.random.fold_in(jax.random.key(config.seed), 1),
  )

  k = 1
  alone = train.train_and_evaluate(points[k].config, tmp_path / 'alone')
  template = jax.tree.map(np.asarray, results[k].best_params)
  params = flax.serialization.from_bytes(
    template, (tmp_path / 'alone' / train.PARAMS_FILE).read_bytes()
  )
  for a, b in zip(
    jax.tree.leaves(params),
    jax.tree.leaves(results[k].best_params),
    strict=True,
  ):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
  assert results[k].early_stopping.best_epoch == alone['best_epoch']
  assert results[k].epochs == alone['epochs'] == 3

  # The sweep's models really differ: the check above is not trivially met.
  kernels = [r.best_params['hidden_0']['kernel'] for r in results]
  assert float(jnp.abs(kernels[0] - kernels[2]).max()) > 1e-3


def test_dropout_sweep_compiles_once_and_model_k_equals_the_single_run(
  generated_dir, tmp_path, monkeypatch
):
  traces = count_epoch_traces(monkeypatch)
  config = smoke.get_config()
  config.data_dir = str(generated_dir)
  config.model.width = 24  # a shape no other test compiles
  config.num_epochs = 3
  config.probe_every_epochs = 0
  config.log_histograms_every_epochs = 0
  config.checkpoint_every_epochs = 0
  points = sweeps.sweep_points(config, 'dropout_rate', [0.0, 0.1, 0.3])
  configs = [p.config for p in points]
  assert sweeps.program_groups(configs) == [[0, 1, 2]]
  splits = pipeline.load_splits(
    generated_dir,
    seed=config.split_seed,
    fractions=tuple(config.fractions),
    num_bins=config.num_bins,
  )
  results = sweeps.train_group(
    configs,
    splits.train,
    splits.valid,
    shuffle_key=jax.random.fold_in(jax.random.key(config.seed), 1),
  )
  # Three rates, one program.
  assert len(traces) == 1

  # Rate 0.3 alone draws the same masks; rate 0 alone has no dropout in its
  # program, while in the sweep it keeps every unit.
  for k in (2, 0):
    workdir = tmp_path / f'alone_{k}'
    alone = train.train_and_evaluate(configs[k], workdir)
    template = jax.tree.map(np.asarray, results[k].best_params)
    params = flax.serialization.from_bytes(
      template, (workdir / train.PARAMS_FILE).read_bytes()
    )
    for a, b in zip(
      jax.tree.leaves(params),
      jax.tree.leaves(results[k].best_params),
      strict=True,
    ):
      np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    assert results[k].early_stopping.best_epoch == alone['best_epoch']

  # All three start from the same seed: only dropout sets them apart.
  kernels = [r.best_params['hidden_1']['kernel'] for r in results]
  assert float(jnp.abs(kernels[0] - kernels[1]).max()) > 1e-3
  assert float(jnp.abs(kernels[1] - kernels[2]).max()) > 1e-3


def test_stopped_model_keeps_its_state_while_the_other_trains():
  configs = [tiny_config(), tiny_config()]
  configs[1].weight_decay = 1e-3
  state = sweeps.stack_train_states(configs)
  data = noisy_dataset(80, seed=0)
  x, y = pipeline.epoch_batches(
    data.features, data.labels, jax.random.key(3), 20
  )
  keys = jnp.stack([jax.random.key(5), jax.random.key(6)])
  before = jax.tree.map(np.array, state)
  alone, _ = jax.jit(train.train_epoch)(
    sweeps.model_slice(state, 0), x, y, keys[0]
  )

  after, _ = sweeps.sweep_epoch(state, x, y, keys, jnp.array([True, False]))
  for a, b in zip(jax.tree.leaves(after), jax.tree.leaves(before), strict=True):
    np.testing.assert_array_equal(a[1], b[1])
  for a, b in zip(
    jax.tree.leaves(sweeps.model_slice(after, 0)),
    jax.tree.leaves(alone),
    strict=True,
  ):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
  # 80 events in batches of 20: 4 steps taken by model 0, none by model 1.
  assert after.step.tolist() == [4, 0]


def test_sweep_ends_when_every_model_stopped_and_compiles_once(
  monkeypatch, tmp_path
):
  traces = count_epoch_traces(monkeypatch)
  config = tiny_config()
  config.model.width = 6  # a shape no other test compiles
  config.num_epochs = 10
  config.patience = 1
  # After epoch 0 the validation loss is at least 0.611 (noisy_dataset), so
  # an improvement to below half of it is impossible: every model stops
  # after epoch 1, its second epoch.
  config.min_relative_improvement = 0.5
  points = sweeps.sweep_points(config, 'learning_rate', [0.01, 0.05, 0.2])
  results = sweeps.train_group(
    [p.config for p in points],
    noisy_dataset(400, seed=1),
    noisy_dataset(200, seed=2),
    shuffle_key=jax.random.key(0),
    logdirs=[tmp_path / p.config.name for p in points],
  )
  assert [r.epochs for r in results] == [2, 2, 2]
  assert all(r.early_stopping.should_stop for r in results)
  assert all(r.early_stopping.best_epoch == 0 for r in results)
  assert [h['epoch'] for h in results[2].history] == [0, 1]
  # Epoch 0 learning rates are the swept ones; epoch 1 decayed by 0.97629.
  np.testing.assert_allclose(
    [r.history[1]['learning_rate'] for r in results],
    [0.01 * 0.97629, 0.05 * 0.97629, 0.2 * 0.97629],
    rtol=1e-6,
  )
  assert len(traces) == 1
  assert len(list(tmp_path.iterdir())) == 3


def test_depth_sweep_splits_into_one_group_per_shape():
  config = tiny_config()
  depth = sweeps.sweep_points(config, 'depth', [1, 3], seeds=[0, 1])
  assert [(p.value, p.seed) for p in depth] == [(1, 0), (1, 1), (3, 0), (3, 1)]
  assert sweeps.program_groups([p.config for p in depth]) == [[0, 1], [2, 3]]
  decay = sweeps.sweep_points(config, 'weight_decay', [0, 1e-5, 1e-4])
  assert sweeps.program_groups([p.config for p in decay]) == [[0, 1, 2]]
  seeds = sweeps.sweep_points(config, 'seed', [4, 7], seeds=[0, 1])
  assert [p.config.seed for p in seeds] == [4, 7]


def test_bad_sweeps_are_rejected():
  config = tiny_config()
  with pytest.raises(ValueError, match='Cannot sweep'):
    sweeps.sweep_points(config, 'momentum', [0.9])
  with pytest.raises(ValueError, match='repeats a value'):
    sweeps.sweep_points(config, 'depth', [2, 2])
  with pytest.raises(ValueError, match='dropout_rate must lie in'):
    sweeps.sweep_points(config, 'dropout_rate', [0.1, 1.5])
  configs = [p.config for p in sweeps.sweep_points(config, 'width', [4, 5])]
  with pytest.raises(ValueError, match='differ only in'):
    sweeps.train_group(
      configs,
      noisy_dataset(40, 0),
      noisy_dataset(40, 1),
      shuffle_key=jax.random.key(0),
    )


def test_run_sweep_writes_records_and_plot(
  generated_dir, tmp_path, monkeypatch
):
  traces = count_epoch_traces(monkeypatch)
  config = sweep_depth.get_config()
  config.data_dir = str(generated_dir)
  config.fractions = (0.7, 0.15, 0.15)
  config.num_bins = 64
  config.model.width = 12
  config.num_epochs = 2
  config.batch_size = 50
  config.eval_batch_size = 1024
  config.sweep.grid.depth = (1, 2)
  records = sweeps.run_sweep(config, tmp_path)

  saved = json.loads((tmp_path / sweeps.SWEEP_FILE).read_text())
  assert saved == records
  assert [r['value'] for r in records] == [1, 2]
  for record in records:
    assert record['epochs'] == 2
    # 15 % of the 4000 generated events in each of valid and test.
    assert record['valid']['n_events'] == record['test']['n_events'] == 600
    assert 0.0 <= record['test']['q'] <= 1.0 and record['test']['q_err'] > 0
    assert 0.5 < record['test']['auc'] < 1.0
  assert (tmp_path / 'q_vs_depth.png').stat().st_size > 0
  # Two depths, two programs.
  assert len(traces) == 2
  with pytest.raises(ValueError, match='lists no values for a momentum'):
    sweeps.run_sweep(config, tmp_path, 'momentum')


def test_plot_puts_zero_weight_decay_in_a_band(tmp_path):
  records = [
    {
      'name': 'weight_decay',
      'value': value,
      'diverged': False,
      'valid': {'q': q, 'q_err': 0.01},
      'test': {'q': q - 0.01, 'q_err': 0.01},
    }
    for value, q in ((0.0, 0.30), (1e-5, 0.31), (1e-3, 0.25))
  ]
  path = sweeps.plot_sweep(records, tmp_path / 'wd.png')
  assert path.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
  assert [p.name for p in tmp_path.iterdir()] == ['wd.png']


def test_models_of_a_group_share_the_network():
  configs = [tiny_config(), tiny_config()]
  configs[1].seed = 9
  state = sweeps.stack_train_states(configs)
  # Model 1 is initialized from fold_in(key(9), 0), as train_and_evaluate
  # does for seed 9.
  single = train.create_train_state(
    configs[1], jax.random.fold_in(jax.random.key(9), 0)
  )
  np.testing.assert_array_equal(
    state.params['hidden_0']['kernel'][1], single.params['hidden_0']['kernel']
  )
  assert state.opt_state.hyperparams['weight_decay'].shape == (2,)
