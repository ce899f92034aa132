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
