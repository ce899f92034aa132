"""Tests of sharded generation and `python -m experiments.generate`."""

import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from flavortag_jax import detector, generator, shards

REPO = pathlib.Path(__file__).resolve().parents[1]


def _assert_same_events(a, b):
  np.testing.assert_array_equal(a.track_offsets, b.track_offsets)
  for name in shards.EVENT_COLUMNS:
    np.testing.assert_array_equal(a.events[name], b.events[name])
  for name in shards.TRACK_COLUMNS:
    np.testing.assert_array_equal(a.tracks[name], b.tracks[name])


def test_plan_shards_splits_the_sample_and_the_job_array():
  # 2500 events in shards of 1000: 1000, 1000, 500.
  plans = generator.plan_shards(2500, 1000)
  assert [p.num_events for p in plans] == [1000, 1000, 500]
  assert plans[2].file_name == 'shard-00002-of-00003.h5'
  # Job 1 of 2 takes the odd shards.
  assert [p.index for p in generator.plan_shards(2500, 1000, 1, 2)] == [1]
  with pytest.raises(ValueError, match='nothing to do'):
    generator.plan_shards(2500, 1000, 3, 4)
  with pytest.raises(ValueError, match='shard_index'):
    generator.plan_shards(2500, 1000, 2, 2)


def test_content_does_not_depend_on_workers_or_jobs(tmp_path):
  kwargs = dict(num_events=600, seed=9, mode='flavor_specific')
  one = generator.generate(
    tmp_path / 'one', events_per_shard=200, num_workers=1, **kwargs
  )
  generator.generate(
    tmp_path / 'two', events_per_shard=200, num_workers=2, **kwargs
  )
  for job in range(2):
    generator.generate(
      tmp_path / 'jobs',
      events_per_shard=200,
      shard_index=job,
      num_shards=2,
      **kwargs,
    )
  assert one.num_events == 600 and len(one.shards) == 3
  reference = shards.read_data_dir(tmp_path / 'one')
  _assert_same_events(reference, shards.read_data_dir(tmp_path / 'two'))
  _assert_same_events(reference, shards.read_data_dir(tmp_path / 'jobs'))
  # Shards have their own random streams: no two share decay times.
  t_tag = reference.events['t_tag'].reshape(3, 200)
  assert len(np.unique(t_tag)) == 600
  assert reference.attrs['seed'] == 9
  # Shard s is the chunk of the s-th child of SeedSequence(seed).
  child = np.random.SeedSequence(9).spawn(3)[1]
  chunk = generator.generate_events(200, child, 'flavor_specific')
  _assert_same_events(chunk, reference.take(np.arange(200, 400)))


def test_rejects_unknown_mode_and_bad_counts_without_writing(tmp_path):
  out = tmp_path / 'out'
  with pytest.raises(ValueError, match='unknown generation mode'):
    generator.generate(out, 100, 0, 'jpsi_kl')
  for num_events in (0, -3):
    with pytest.raises(ValueError, match='num_events must be at least 1'):
      generator.generate(out, num_events, 0, 'nunu')
  with pytest.raises(ValueError, match='events_per_shard'):
    generator.generate(out, 100, 0, 'nunu', events_per_shard=0)
  with pytest.raises(ValueError, match='num_workers'):
    generator.generate(out, 100, 0, 'nunu', num_workers=0)
  assert not out.exists()


def test_unwritable_output_folder(tmp_path):
  blocker = tmp_path / 'a_file'
  blocker.write_text('not a folder')
  with pytest.raises(ValueError, match='cannot write event shards'):
    generator.generate(blocker / 'out', 100, 0, 'nunu')
  assert sorted(p.name for p in tmp_path.iterdir()) == ['a_file']


def test_failure_midway_leaves_only_complete_shards(tmp_path, monkeypatch):
  calls = []
  original = detector.reconstruct

  def failing_reconstruct(*args, **kwargs):
    # Two calls per shard (tag products, background): fail in shard 1.
    calls.append(1)
    if len(calls) == 3:
      raise RuntimeError('detector simulation failed')
    return original(*args, **kwargs)

  monkeypatch.setattr(detector, 'reconstruct', failing_reconstruct)
  with pytest.raises(RuntimeError, match='detector simulation failed'):
    generator.generate(tmp_path, 300, 0, 'nunu', events_per_shard=100)
  assert [p.name for p in tmp_path.iterdir()] == ['shard-00000-of-00003.h5']
  assert shards.read_data_dir(tmp_path).num_events == 100


def test_corrupt_shard_in_the_output_is_reported_by_name(tmp_path):
  generator.generate(tmp_path, 200, 0, 'nunu', events_per_shard=100)
  path = tmp_path / 'shard-00001-of-00002.h5'
  path.write_bytes(path.read_bytes()[:1000])
  with pytest.raises(shards.ShardError, match='shard-00001-of-00002'):
    shards.read_data_dir(tmp_path)


def _run_cli(*flags):
  env = dict(os.environ, PYTHONPATH=str(REPO))
  return subprocess.run(
    [sys.executable, '-m', 'experiments.generate', *flags],
    cwd=REPO,
    env=env,
    capture_output=True,
    text=True,
    timeout=120,
  )


def test_cli_writes_shards_and_a_summary(tmp_path):
  result = _run_cli(
    f'--out_dir={tmp_path}',
    '--num_events=300',
    '--seed=2',
    '--mode=jpsi_ks',
    '--events_per_shard=150',
    '--background_rate=0.5',
  )
  assert result.returncode == 0, result.stderr
  assert 'events: 300 in 2 shards' in result.stdout
  assert 'D*+- yield' in result.stdout
  assert 'events/s' in result.stdout
  events = shards.read_data_dir(tmp_path)
  assert events.num_events == 300
  assert events.attrs['mode'] == 'jpsi_ks'
  assert events.attrs['detector_config']['background_rate'] == 0.5


@pytest.mark.parametrize(
  'flags, message',
  [
    (('--num_events=0',), 'num_events must be at least 1'),
    (('--num_events=10', '--mode=b_to_nothing'), 'mode'),
  ],
)
def test_cli_bad_input_gives_a_clear_error(tmp_path, flags, message):
  result = _run_cli(f'--out_dir={tmp_path / "out"}', *flags)
  assert result.returncode != 0
  assert message in result.stderr
  assert 'Traceback' not in result.stderr
  assert not (tmp_path / 'out').exists()


def test_refuses_to_mix_two_differently_split_samples(tmp_path):
  generator.generate(tmp_path, 200, 0, 'nunu', events_per_shard=100)
  # Redoing the same split is fine (the shards are replaced whole)...
  generator.generate(tmp_path, 200, 0, 'nunu', events_per_shard=100)
  # ...but a sample split into 4 shards would mix with the 2 already there.
  with pytest.raises(ValueError, match='already holds shards of another'):
    generator.generate(tmp_path, 200, 0, 'nunu', events_per_shard=50)
  assert len(list(tmp_path.iterdir())) == 2
