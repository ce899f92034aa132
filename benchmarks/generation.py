"""Benchmark: generation speed of the full chain against bare Pythia decays.

Run from the repository root:

  python -m benchmarks.generation --num_events=10000 --repeats=3

In one process (one core) it decays the same tag Bs twice: once with bare
Pythia 8 (put the B in, call next(), nothing else) and once through the full
chain of generator.generate_events plus writing the shard (pair kinematics and
mixing, Pythia with the decay-record reading and truth, detector response
with background, HDF5 shard). Both reuse an initialized Pythia, as the
generation workers do. It prints events per second per core of both,
CPU time and wall time, the ratio, and where the chain spends its time. CPU
time of the process is the figure to compare on a shared machine.
"""

import pathlib
import tempfile
import time

from absl import app, flags
import numpy as np

from flavortag_jax import detector, generator, physics, shards, tag_decays

_NUM_EVENTS = flags.DEFINE_integer('num_events', 10_000, 'Events per run.')
_REPEATS = flags.DEFINE_integer('repeats', 3, 'Runs; the fastest counts.')
_SEED = flags.DEFINE_integer('seed', 0, 'Seed.')


def _timed(fn):
  """Returns (cpu seconds, wall seconds, result) of fn()."""
  cpu, wall = time.process_time(), time.perf_counter()
  result = fn()
  return time.process_time() - cpu, time.perf_counter() - wall, result


def _bare_pythia(pythia, pairs):
  event = pythia.event
  b_pdg = np.where(pairs.decays.q_tag > 0, 511, -511)
  mass = physics.PHYSICS.m_b0
  for i in range(len(b_pdg)):
    px, py, pz, e = pairs.p_tag[i]
    event.reset()
    event.append(int(b_pdg[i]), 1, 0, 0, px, py, pz, e, mass)
    pythia.next()


def _best(runs):
  return min(runs, key=lambda r: r[0])


def main(argv):
  del argv
  n, seed = _NUM_EVENTS.value, _SEED.value
  # The same B pairs generate_events draws for this seed.
  pair_seed, _, detector_seed = np.random.SeedSequence(seed).spawn(3)
  pairs = generator.draw_b_pairs(np.random.default_rng(pair_seed), n, 'nunu')

  init = _best(
    [_timed(lambda: tag_decays.make_pythia(1)) for _ in range(_REPEATS.value)]
  )
  bare, chain, stages = [], [], []
  with tempfile.TemporaryDirectory() as tmp:
    path = pathlib.Path(tmp) / 'shard.h5'
    for repeat in range(_REPEATS.value):
      pythia = tag_decays.make_pythia(repeat + 1)
      bare.append(_timed(lambda p=pythia: _bare_pythia(p, pairs)))
      chain.append(
        _timed(
          lambda p=pythia: shards.write_shard(
            path, generator.generate_events(n, seed, 'nunu', pythia=p)
          )
        )
      )
      # Stage by stage: Pythia with record reading and truth, detector.
      pythia = tag_decays.make_pythia(repeat + 1)
      decay = _timed(
        lambda p=pythia: tag_decays.decay_tag_bs(
          p, pairs.decays.q_tag, pairs.p_tag, pairs.tag_vertex
        )
      )
      tag = decay[2]
      particles = {
        'pdg': tag.pdg,
        'p': tag.p,
        'production_vertex': tag.production_vertex,
      }
      rng = np.random.default_rng(detector_seed)
      reco = _timed(lambda r=rng, x=particles: detector.reconstruct(x, r))
      stages.append((decay[0], reco[0]))

  bare_cpu, bare_wall, _ = _best(bare)
  chain_cpu, chain_wall, _ = _best(chain)
  decay_cpu = min(s[0] for s in stages)
  reco_cpu = min(s[1] for s in stages)
  print(f'{n} tag B decays, best of {_REPEATS.value}, one process:')
  print(
    f'  bare Pythia      {n / bare_cpu:8.0f} events/s per core (CPU), '
    f'{n / bare_wall:8.0f} wall'
  )
  print(
    f'  full chain       {n / chain_cpu:8.0f} events/s per core (CPU), '
    f'{n / chain_wall:8.0f} wall'
  )
  print(
    f'  chain / bare time {chain_cpu / bare_cpu:.2f} (CPU), '
    f'{chain_wall / bare_wall:.2f} (wall); aim <= 2'
  )
  print(f'  Pythia init (once per process, not in the chain) {init[0]:.3f} s')
  print('  chain stages (CPU s):')
  print(f'    Pythia + record + truth    {decay_cpu:.3f}')
  print(f'    detector (tag tracks)      {reco_cpu:.3f}')
  print(
    f'    rest (pairs, background, assembly, HDF5) '
    f'{chain_cpu - decay_cpu - reco_cpu:.3f}'
  )


if __name__ == '__main__':
  app.run(main)
