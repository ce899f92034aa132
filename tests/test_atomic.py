"""Tests of atomic writes: a complete file or the old one, nothing left over."""

import pytest

from flavortag_jax import atomic


def test_write_text_and_bytes_replace_the_old_file_whole(tmp_path):
  path = tmp_path / 'out.txt'
  path.write_text('old content, longer than the new one\n')
  assert atomic.write_text(path, 'new\n') == path
  assert path.read_text() == 'new\n'
  assert atomic.write_bytes(str(path), b'\x00\x01') == path
  assert path.read_bytes() == b'\x00\x01'
  assert [p.name for p in tmp_path.iterdir()] == ['out.txt']


def test_temporary_path_is_hidden_beside_the_destination(tmp_path):
  path = tmp_path / 'table.md'
  with atomic.temporary_path(path) as tmp:
    assert tmp.parent == tmp_path and tmp.name.startswith('.table.md.')
    assert not tmp.exists()
    tmp.write_text('| a |\n')
    # Until the block ends, the destination does not exist.
    assert not path.exists()
  assert path.read_text() == '| a |\n'
  assert [p.name for p in tmp_path.iterdir()] == ['table.md']


def test_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
  path = tmp_path / 'metrics.json'
  path.write_text('{"q": 0.3}\n')
  with pytest.raises(RuntimeError, match='interrupted'):
    with atomic.temporary_path(path) as tmp:
      tmp.write_text('{"q": ')
      raise RuntimeError('interrupted')
  assert path.read_text() == '{"q": 0.3}\n'
  assert [p.name for p in tmp_path.iterdir()] == ['metrics.json']


def test_missing_folder_is_an_error_and_creates_nothing(tmp_path):
  with pytest.raises(FileNotFoundError):
    atomic.write_text(tmp_path / 'absent' / 'out.txt', 'x')
  assert list(tmp_path.iterdir()) == []
