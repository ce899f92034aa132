"""Generates Belle II-like B pair events into HDF5 shards.

Usage (from the repository root):

  python -m experiments.generate --out_dir=data/nunu --num_events=100000 \
    --seed=0 --mode=nunu --num_workers=2

`--mode` is nunu (signal B invisible: the training sample), flavor_specific
(for mixing and calibration studies) or jpsi_ks (CP eigenstate, S = 0.70).
For a cluster job array, give every job the same flags plus its own
`--shard_index` and the array size as `--num_shards`: job j writes the shards
s with s % num_shards == j, and each shard's content depends only on --seed
and s.
"""

import dataclasses

from absl import app, flags, logging

from flavortag_jax import detector, generator, shards

_OUT_DIR = flags.DEFINE_string('out_dir', None, 'Folder for the shards.')
_NUM_EVENTS = flags.DEFINE_integer(
  'num_events', None, 'Events in the full sample.'
)
_SEED = flags.DEFINE_integer('seed', 0, 'Seed of the sample (>= 0).')
_MODE = flags.DEFINE_enum('mode', 'nunu', shards.MODES, 'Signal B decay.')
_NUM_WORKERS = flags.DEFINE_integer(
  'num_workers', 1, 'Worker processes, each with its own Pythia.'
)
_EVENTS_PER_SHARD = flags.DEFINE_integer(
  'events_per_shard', 10_000, 'Events per shard file.'
)
_BACKGROUND_RATE = flags.DEFINE_float(
  'background_rate',
  None,
  'Mean number of background tracks per event (detector default if unset).',
)
_SHARD_INDEX = flags.DEFINE_integer(
  'shard_index', 0, 'Index of this job in a job array.'
)
_NUM_SHARDS = flags.DEFINE_integer(
  'num_shards', 1, 'Number of jobs in the job array.'
)
flags.mark_flags_as_required(['out_dir', 'num_events'])


def main(argv):
  del argv
  detector_config = detector.DetectorConfig()
  if _BACKGROUND_RATE.value is not None:
    detector_config = dataclasses.replace(
      detector_config, background_rate=_BACKGROUND_RATE.value
    )
  logging.info(
    'Generating %d %s events (seed %d) into %s with %d worker(s)',
    _NUM_EVENTS.value,
    _MODE.value,
    _SEED.value,
    _OUT_DIR.value,
    _NUM_WORKERS.value,
  )
  try:
    summary = generator.generate(
      _OUT_DIR.value,
      _NUM_EVENTS.value,
      _SEED.value,
      _MODE.value,
      events_per_shard=_EVENTS_PER_SHARD.value,
      num_workers=_NUM_WORKERS.value,
      shard_index=_SHARD_INDEX.value,
      num_shards=_NUM_SHARDS.value,
      detector_config=detector_config,
      progress=True,
    )
  except ValueError as e:
    raise SystemExit(f'generate: {e}') from e
  print(summary.format())


if __name__ == '__main__':
  app.run(main)
