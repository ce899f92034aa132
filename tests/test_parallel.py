"""Tests for device meshes, batch placement and the multi-host start."""

import json
import os
import subprocess
import sys
import textwrap

import ml_collections
import pytest

from flavortag_jax import parallel

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_on_fake_devices(body: str, num_devices: int = 4) -> dict:
  """Runs Python code in a fresh process that sees several CPU devices.

  The device count of the CPU platform is fixed when JAX starts, so the code
  runs in its own interpreter with XLA_FLAGS set before jax is imported. The
  code prints one JSON object as its last line, which is returned.
  """
  env = dict(os.environ)
  env['XLA_FLAGS'] = (
    env.get('XLA_FLAGS', '')
    + f' --xla_force_host_platform_device_count={num_devices}'
  )
  env['JAX_PLATFORMS'] = 'cpu'
  result = subprocess.run(
    [sys.executable, '-c', textwrap.dedent(body)],
    env=env,
    capture_output=True,
    text=True,
    timeout=240,
    check=False,
    cwd=REPO_ROOT,
  )
  assert result.returncode == 0, result.stderr[-4000:]
  return json.loads(result.stdout.strip().splitlines()[-1])


def test_mesh_asks_for_more_devices_than_exist():
  with pytest.raises(ValueError, match='devices are visible'):
    parallel.make_data_mesh(1000)
  with pytest.raises(ValueError, match='devices are visible'):
    parallel.make_data_mesh(-1)


def test_mesh_from_config_is_none_without_data_parallel():
  config = ml_collections.ConfigDict({'batch_size': 100})
  assert parallel.mesh_from_config(config) is None
  config.data_parallel = False
  assert parallel.mesh_from_config(config) is None
  config.data_parallel = True
  mesh = parallel.mesh_from_config(config)
  assert mesh.axis_names == (parallel.DATA_AXIS,)


def test_partial_coordinator_flags_are_rejected():
  with pytest.raises(ValueError, match='all of --coordinator_address'):
    parallel.initialize_distributed(coordinator_address='10.0.0.1:1234')
  with pytest.raises(ValueError, match=r'process_id must lie in 0\.\.1'):
    parallel.initialize_distributed(
      coordinator_address='10.0.0.1:1234', num_processes=2, process_id=2
    )


def test_flags_without_distributed_do_not_start_jax_distributed():
  from absl import flags

  registry = flags.FlagValues()
  parallel.define_flags(registry)
  registry(['prog', '--local_device_ids=0,1'])
  assert not parallel.initialize_from_flags(registry)
  assert registry.local_device_ids == ['0', '1']


def test_batches_split_evenly_over_four_devices():
  out = run_on_fake_devices("""
    import json
    import numpy as np
    from flavortag_jax import parallel

    mesh = parallel.make_data_mesh()
    x = np.arange(3 * 8 * 5, dtype=np.float32).reshape(3, 8, 5)
    sharded = parallel.shard_batches(x, mesh)
    shapes = sorted({tuple(s.data.shape) for s in sharded.addressable_shards})
    # Device d holds events 2d and 2d+1 of every batch.
    rows = {
      s.device.id: np.asarray(s.data)[0, :, 0].tolist()
      for s in sharded.addressable_shards
    }
    try:
      parallel.shard_batches(x[:, :6], mesh)
      uneven = 'accepted'
    except ValueError as error:
      uneven = str(error)
    print(json.dumps({
      'mesh_size': mesh.size,
      'shapes': shapes,
      'rows': rows,
      'equal': bool(np.array_equal(np.asarray(sharded), x)),
      'uneven': uneven,
    }))
  """)
  assert out['mesh_size'] == 4
  # 8 events per batch over 4 devices: 2 each, [3, 2, 5] per device.
  assert out['shapes'] == [[3, 2, 5]]
  assert out['equal']
  # Feature 0 of event e in batch 0 is 5 * e: device 1 holds events 2, 3.
  assert out['rows']['1'] == [10.0, 15.0]
  assert 'batch of 6 events cannot be split evenly over 4' in out['uneven']


def test_data_parallel_training_equals_single_device_training():
  out = run_on_fake_devices("""
    import json
    import jax
    import jax.numpy as jnp
    import numpy as np
    from experiments.configs import smoke
    from flavortag_jax import optim, parallel, pipeline, sweeps, train

    config = smoke.get_config()
    config.batch_size = 40
    rng = np.random.default_rng(0)
    features = jnp.asarray(rng.uniform(-1, 1, (400, 140)).astype(np.float32))
    labels = jnp.asarray((rng.random(400) < 0.5).astype(np.float32))
    mesh = parallel.make_data_mesh(4)

    def run(sharding):
      state = train.create_train_state(config, jax.random.key(0))
      if sharding is not None:
        state = parallel.replicate(state, mesh)
      epoch_fn = jax.jit(train.train_epoch)
      for epoch in range(3):
        state = state.replace(
          opt_state=optim.at_epoch(state.opt_state, config, epoch)
        )
        x, y = pipeline.epoch_batches(
          features, labels, jax.random.key(epoch), 40, sharding=sharding
        )
        state, _ = epoch_fn(state, x, y, jax.random.key(10 + epoch))
      return state.params, x

    single, _ = run(None)
    sharded, x = run(pipeline.batch_sharding(mesh))
    params_diff = max(
      float(jnp.abs(a - b).max())
      for a, b in zip(jax.tree.leaves(single), jax.tree.leaves(sharded))
    )
    initial = train.create_train_state(config, jax.random.key(0)).params
    moved = max(
      float(jnp.abs(a - b).max())
      for a, b in zip(jax.tree.leaves(single), jax.tree.leaves(initial))
    )

    # A vmapped sweep of two models, with and without the mesh.
    def dataset(seed):
      r = np.random.default_rng(seed)
      q = r.choice(np.array([-1, 1], np.int8), 200)
      x = r.uniform(-1, 1, (200, 140)).astype(np.float32)
      x[:, 0] = 0.5 * q + r.normal(0, 0.5, 200)
      return pipeline.Dataset(
        jnp.asarray(x), jnp.asarray(pipeline.labels_from_q(q)), q,
        np.zeros(200, np.int8), np.zeros(200, np.float32),
        np.zeros(200, np.uint32), np.arange(200))

    config.num_epochs = 2
    configs = [
      p.config for p in sweeps.sweep_points(config, 'weight_decay', [0, 1e-3])
    ]
    results = [
      sweeps.train_group(configs, dataset(1), dataset(2),
                         shuffle_key=jax.random.key(3), mesh=m)
      for m in (None, mesh)
    ]
    sweep_diff = max(
      float(jnp.abs(a - b).max())
      for k in range(2)
      for a, b in zip(jax.tree.leaves(results[0][k].best_params),
                      jax.tree.leaves(results[1][k].best_params))
    )
    print(json.dumps({
      'params_diff': params_diff,
      'moved': moved,
      'x_shards': len(x.addressable_shards),
      'x_shard_shape': list(x.addressable_shards[0].data.shape),
      'params_replicated': all(
        p.sharding.is_fully_replicated for p in jax.tree.leaves(sharded)
      ),
      'sweep_diff': sweep_diff,
      'sweep_epochs': [r.epochs for r in results[1]],
    }))
  """)
  # Batches of 40 over 4 devices: each holds [10 steps, 10 events, 140].
  assert out['x_shards'] == 4
  assert out['x_shard_shape'] == [10, 10, 140]
  assert out['params_replicated']
  # Training moved the parameters, and both placements agree to float
  # rounding (the gradient sums run in another order over 4 devices).
  assert out['moved'] > 1e-2
  assert out['params_diff'] < 1e-5, out
  assert out['sweep_diff'] < 1e-5, out
  assert out['sweep_epochs'] == [2, 2], out
