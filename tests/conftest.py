"""Shared fixtures: a small generated nunu sample for every module's tests."""

import pytest

from flavortag_jax import shards

# 4000 nunu events (the training-sample mode), seed 1, in 2 shards of 2000,
# with the detector's default background: generated once per test session.
GENERATED_NUM_EVENTS = 4000
GENERATED_SEED = 1
GENERATED_EVENTS_PER_SHARD = 2000


@pytest.fixture(scope='session')
def generated_dir(tmp_path_factory):
  """A folder with 2 nunu shards of 2000 events each (seed 1)."""
  from flavortag_jax import generator

  out_dir = tmp_path_factory.mktemp('generated_nunu')
  generator.generate(
    out_dir,
    GENERATED_NUM_EVENTS,
    seed=GENERATED_SEED,
    mode='nunu',
    events_per_shard=GENERATED_EVENTS_PER_SHARD,
  )
  return out_dir


@pytest.fixture(scope='session')
def generated_events(generated_dir):
  """shards.Events of `generated_dir`: 4000 events with their tracks."""
  return shards.read_data_dir(generated_dir)
