"""Records of a training run: metric logs, TensorBoard, activation dumps, JSON.

Everything a run writes outside its checkpoints goes through this module:
`MetricWriter` sends scalars to the absl log and scalars and histograms to
TensorBoard (tensorboardX); `ActivationWriter` appends hidden-layer
activations of a fixed probe set to an HDF5 file; `write_json` writes a JSON
file atomically; `quiet_checkpoint_progress` keeps Orbax's per-save chatter
out of the log.
"""

from collections.abc import Mapping, Sequence
import json
import logging as std_logging
import os
import pathlib
from typing import Any

from absl import logging
import h5py
import numpy as np
import tensorboardX

from flavortag_jax import atomic


def write_json(path: str | os.PathLike, content: Any) -> pathlib.Path:
  """Writes `content` as JSON under a temporary name, then renames it."""
  text = json.dumps(content, indent=2, allow_nan=False) + '\n'
  return atomic.write_text(path, text)


class _OrbaxProgressFilter(std_logging.Filter):
  """Keeps Orbax's warnings and errors, drops its per-save progress lines."""

  def filter(self, record: std_logging.LogRecord) -> bool:
    return record.levelno >= std_logging.WARNING or (
      '/orbax/' not in record.pathname
    )


def quiet_checkpoint_progress() -> None:
  """Drops Orbax's INFO lines (dozens per checkpoint) from the absl log.

  Call once at program start, after absl has set up its handler.
  """
  handler = logging.get_absl_handler()
  if not any(isinstance(f, _OrbaxProgressFilter) for f in handler.filters):
    handler.addFilter(_OrbaxProgressFilter())


class MetricWriter:
  """Scalars to the absl log and TensorBoard; histograms to TensorBoard.

  Args:
    logdir: Folder of the TensorBoard event files.
    purge_step: When a run resumes at epoch k, pass k: TensorBoard then
      drops what an interrupted earlier attempt wrote for epochs >= k.
  """

  def __init__(self, logdir: str | os.PathLike, purge_step: int | None = None):
    self._writer = tensorboardX.SummaryWriter(
      logdir=str(logdir), purge_step=purge_step
    )

  def write_scalars(self, step: int, scalars: Mapping[str, float]) -> None:
    """Logs scalars `name -> value` at `step` (the epoch)."""
    for name, value in scalars.items():
      self._writer.add_scalar(name, float(value), global_step=step)
    text = ', '.join(f'{k}={float(v):.6g}' for k, v in scalars.items())
    logging.info('[%d] %s', step, text)

  def write_histograms(
    self, step: int, arrays: Mapping[str, np.ndarray]
  ) -> None:
    """Adds histograms of arrays `name -> values` (any shape) at `step`."""
    for name, values in arrays.items():
      values = np.asarray(values, np.float32).ravel()
      self._writer.add_histogram(name, values, global_step=step)

  def flush(self) -> None:
    self._writer.flush()

  def close(self) -> None:
    self._writer.close()

  def __enter__(self) -> 'MetricWriter':
    return self

  def __exit__(self, *exc) -> None:
    self.close()


class ActivationWriter:
  """Appends hidden-layer activations of a fixed probe set to an HDF5 file.

  Layout: the probe's truth at the top level (datasets named after the keys
  of `probe`, e.g. labels, q_tag, dt, tag_flags, event_index, each shape
  [probe events]), and one group `epoch_NNNN` per dump holding `layer_0` ...
  `layer_{n-1}`, each shape [probe events, width] float16, with the epoch as
  an attribute. NOTE: float16 (3 significant digits) halves the file, which
  at the reference scale holds tens of dumps of 5000 x 300 x 8 values;
  representation studies do not need more precision. A group is written
  under a temporary name and renamed when complete, so a reader never sees
  half a dump; a dump of an epoch that is already in the file (a resumed run)
  replaces it.

  Args:
    path: The HDF5 file; created if missing.
    probe: Truth of the probe events, name -> array of shape [events, ...].
  """

  def __init__(self, path: str | os.PathLike, probe: Mapping[str, np.ndarray]):
    self.path = pathlib.Path(path)
    with h5py.File(self.path, 'a') as f:
      for name, values in probe.items():
        values = np.asarray(values)
        if name in f:
          if not np.array_equal(f[name][()], values):
            raise ValueError(
              f'{self.path} holds a probe set whose {name!r} differs from '
              'this run; use a fresh workdir or delete the file'
            )
          continue
        f.create_dataset(name, data=values)

  def write(self, epoch: int, activations: Sequence[np.ndarray]) -> None:
    """Stores the activations after `epoch`, one array per hidden layer."""
    name = f'epoch_{epoch:04d}'
    tmp = f'.{name}.tmp'
    with h5py.File(self.path, 'a') as f:
      for stale in (tmp, name):
        if stale in f:
          del f[stale]
      group = f.create_group(tmp)
      group.attrs['epoch'] = epoch
      for layer, values in enumerate(activations):
        group.create_dataset(
          f'layer_{layer}', data=np.asarray(values, np.float16)
        )
      f.move(tmp, name)
