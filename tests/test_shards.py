"""Tests of the HDF5 shard schema: round trip, atomic write, bad files."""

import h5py
import numpy as np
import pytest

from flavortag_jax import shards


def make_events(n_tracks=(2, 0, 3), mode='nunu', seed=0):
  """Events with the given track counts and recognizable column values."""
  rng = np.random.default_rng(seed)
  n_tracks = np.asarray(n_tracks, np.int32)
  num_events, num_tracks = len(n_tracks), int(n_tracks.sum())
  events = {}
  for name, (dtype, shape, _) in shards.EVENT_COLUMNS.items():
    events[name] = rng.integers(-1, 2, (num_events, *shape)).astype(dtype)
  events['n_tracks'] = n_tracks
  tracks = {}
  for name, (dtype, shape, _) in shards.TRACK_COLUMNS.items():
    tracks[name] = rng.integers(0, 5, (num_tracks, *shape)).astype(dtype)
  tracks['px'] = np.arange(num_tracks, dtype=np.float32)
  attrs = {'mode': mode, 'seed': seed, 'settings': {'a': [1, 2]}}
  return shards.Events(
    events, tracks, shards.offsets_from_counts(n_tracks), attrs
  )


def test_round_trip_keeps_every_column_and_attribute(tmp_path):
  events = make_events()
  path = shards.write_shard(tmp_path / 'a.h5', events)
  back = shards.read_shard(path)
  assert back.num_events == 3 and back.num_tracks == 5
  np.testing.assert_array_equal(back.track_offsets, [0, 2, 2, 5])
  for name in shards.EVENT_COLUMNS:
    np.testing.assert_array_equal(back.events[name], events.events[name])
    assert back.events[name].dtype == shards.EVENT_COLUMNS[name][0]
  for name in shards.TRACK_COLUMNS:
    np.testing.assert_array_equal(back.tracks[name], events.tracks[name])
  assert back.attrs['mode'] == 'nunu'
  assert back.attrs['settings'] == {'a': [1, 2]}
  assert back.attrs['schema_version'] == shards.SCHEMA_VERSION
  # The third event owns tracks 2, 3, 4 (px was set to the track number).
  np.testing.assert_array_equal(back.take([2]).tracks['px'], [2, 3, 4])


def test_failed_write_leaves_no_file(tmp_path, monkeypatch):
  events = make_events()
  calls = []

  def failing_create_dataset(self, name, *args, **kwargs):
    calls.append(name)
    if len(calls) == 5:
      raise OSError('disk full')
    return original(self, name, *args, **kwargs)

  original = h5py.Group.create_dataset
  monkeypatch.setattr(h5py.Group, 'create_dataset', failing_create_dataset)
  with pytest.raises(OSError, match='disk full'):
    shards.write_shard(tmp_path / 'a.h5', events)
  assert list(tmp_path.iterdir()) == []


def test_write_replaces_an_old_shard_whole(tmp_path):
  shards.write_shard(tmp_path / 'a.h5', make_events((1, 1)))
  shards.write_shard(tmp_path / 'a.h5', make_events((4,)))
  assert shards.read_shard(tmp_path / 'a.h5').num_tracks == 4
  assert [p.name for p in tmp_path.iterdir()] == ['a.h5']


def test_inconsistent_events_are_not_written(tmp_path):
  events = make_events()
  events.events['n_tracks'] = np.array([1, 1, 3], np.int32)
  with pytest.raises(shards.ShardError, match='n_tracks'):
    shards.write_shard(tmp_path / 'a.h5', events)
  del events.tracks['dr']
  with pytest.raises(shards.ShardError, match='dr'):
    shards.write_shard(tmp_path / 'b.h5', events)
  assert list(tmp_path.iterdir()) == []


def test_missing_file(tmp_path):
  with pytest.raises(shards.ShardError, match='no such shard'):
    shards.read_shard(tmp_path / 'absent.h5')


def test_truncated_file(tmp_path):
  path = shards.write_shard(tmp_path / 'a.h5', make_events())
  data = path.read_bytes()
  path.write_bytes(data[: len(data) // 2])
  with pytest.raises(shards.ShardError, match='truncated'):
    shards.read_shard(path)


def test_not_hdf5(tmp_path):
  path = tmp_path / 'a.h5'
  path.write_text('q_tag,dt\n1,0.5\n')
  with pytest.raises(shards.ShardError, match='not a readable HDF5'):
    shards.read_shard(path)


def test_foreign_hdf5_file(tmp_path):
  path = tmp_path / 'a.h5'
  with h5py.File(path, 'w') as f:
    f.create_dataset('x', data=np.zeros(3))
  with pytest.raises(shards.ShardError, match='not a flavortag_jax'):
    shards.read_shard(path)


def test_wrong_schema_version(tmp_path):
  path = shards.write_shard(tmp_path / 'a.h5', make_events())
  with h5py.File(path, 'a') as f:
    f.attrs['schema_version'] = shards.SCHEMA_VERSION + 1
  with pytest.raises(shards.ShardError, match='schema version'):
    shards.read_shard(path)


def test_missing_column_in_file(tmp_path):
  path = shards.write_shard(tmp_path / 'a.h5', make_events())
  with h5py.File(path, 'a') as f:
    del f['tracks']['kaonID']
  with pytest.raises(shards.ShardError, match='kaonID'):
    shards.read_shard(path)


def test_data_dir_reads_shards_in_order_and_rejects_mixed_modes(tmp_path):
  shards.write_shard(tmp_path / 'shard-1.h5', make_events((1,), seed=1))
  shards.write_shard(tmp_path / 'shard-0.h5', make_events((2, 3), seed=0))
  events = shards.read_data_dir(tmp_path)
  assert events.num_events == 3
  np.testing.assert_array_equal(events.events['n_tracks'], [2, 3, 1])
  np.testing.assert_array_equal(events.track_offsets, [0, 2, 5, 6])

  shards.write_shard(tmp_path / 'shard-2.h5', make_events(mode='jpsi_ks'))
  with pytest.raises(shards.ShardError, match='mode'):
    shards.read_data_dir(tmp_path)


def test_read_shards_checks_modes_of_a_generator_of_paths(tmp_path):
  paths = [tmp_path / 'nunu.h5', tmp_path / 'jpsi.h5']
  shards.write_shard(paths[0], make_events((1,), mode='nunu'))
  shards.write_shard(paths[1], make_events((2,), mode='jpsi_ks'))
  # A generator can be iterated once; the mode check must still see both.
  with pytest.raises(shards.ShardError, match=r'jpsi\.h5: mode'):
    shards.read_shards(p for p in paths)
  with pytest.raises(shards.ShardError, match='no shards'):
    shards.read_shards(p for p in ())
  # Two shards of one mode, given as a generator, are joined in order.
  shards.write_shard(paths[1], make_events((2, 3), mode='nunu'))
  events = shards.read_shards(p for p in paths)
  np.testing.assert_array_equal(events.events['n_tracks'], [1, 2, 3])


def test_empty_or_missing_data_dir(tmp_path):
  with pytest.raises(shards.ShardError, match='no shards'):
    shards.read_data_dir(tmp_path)
  with pytest.raises(shards.ShardError, match='no such data folder'):
    shards.read_data_dir(tmp_path / 'absent')
