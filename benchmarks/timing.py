"""Wall-clock timing shared by the benchmark scripts."""

import time


def best_time(fn, repeats: int, warm_up: bool = True) -> float:
  """Smallest wall time in seconds of `repeats` calls of fn().

  Args:
    fn: Callable that does the timed work and waits for its result.
    repeats: Timed calls; the fastest counts.
    warm_up: Make one untimed call first (compilation, caches).
  """
  if warm_up:
    fn()
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)
  return min(times)
