"""Atomic file writes: a file is written under a temporary name, then renamed.

A reader (or a run that resumes after a crash) sees either the old file or
the complete new one, never a half-written file. The temporary file sits in
the destination folder, so the rename stays on one file system, and is named
`.NAME.PID.tmp`, hidden and distinct per process.
"""

from collections.abc import Iterator
import contextlib
import os
import pathlib


@contextlib.contextmanager
def temporary_path(path: str | os.PathLike) -> Iterator[pathlib.Path]:
  """Yields a temporary path to write; renames it to `path` on success.

  If the block raises, the temporary file is removed, `path` is left as it
  was and the error propagates.

  Args:
    path: The destination file; its folder must exist.

  Yields:
    The temporary path, in the folder of `path`, not yet existing.
  """
  path = pathlib.Path(path)
  tmp = path.with_name(f'.{path.name}.{os.getpid()}.tmp')
  try:
    yield tmp
    os.replace(tmp, path)
  finally:
    if tmp.exists():
      tmp.unlink()


def write_text(path: str | os.PathLike, text: str) -> pathlib.Path:
  """Writes `text` to `path` atomically; returns the path."""
  path = pathlib.Path(path)
  with temporary_path(path) as tmp:
    tmp.write_text(text)
  return path


def write_bytes(path: str | os.PathLike, data: bytes) -> pathlib.Path:
  """Writes `data` to `path` atomically; returns the path."""
  path = pathlib.Path(path)
  with temporary_path(path) as tmp:
    tmp.write_bytes(data)
  return path
