"""Tests of the comparison-study stages and the scale study program."""

import json
import pathlib
import subprocess
import sys

from absl import app
import pytest

from experiments import scale
from flavortag_jax import shards, study

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_stage_is_finished_only_with_the_same_settings(tmp_path):
  stages = study.Stages(total=1)
  assert not stages.finished(tmp_path, {'seed': 1})
  stages.mark_finished(tmp_path, {'seed': 1, 'num_events': 10})
  assert stages.finished(tmp_path, {'num_events': 10, 'seed': 1})
  assert not stages.finished(tmp_path, {'seed': 2, 'num_events': 10})


def test_generate_sample_reuses_and_regenerates(tmp_path):
  stages = study.Stages(total=2)
  folder = tmp_path / 'sample'
  study.generate_sample(stages, folder, 300, seed=5, num_workers=1)
  (path,) = shards.shard_paths(folder)
  inode = path.stat().st_ino
  study.generate_sample(stages, folder, 300, seed=5, num_workers=1)
  assert path.stat().st_ino == inode  # reused, not written again
  study.generate_sample(stages, folder, 200, seed=5, num_workers=1)
  assert shards.read_data_dir(folder).num_events == 200


def test_larger_sample_of_a_seed_begins_with_the_smaller_one(tmp_path):
  # The scale study's points are nested: shard k of a seed is the same
  # whatever the sample size.
  small, large = tmp_path / 'small', tmp_path / 'large'
  stages = study.Stages(total=2)
  study.generate_sample(stages, small, 100, 3, 1, events_per_shard=100)
  study.generate_sample(stages, large, 200, 3, 1, events_per_shard=100)
  first = shards.read_shard(shards.shard_paths(large)[0])
  alone = shards.read_data_dir(small)
  for name, column in alone.events.items():
    assert (first.events[name] == column).all(), name
  assert (first.tracks['px'] == alone.tracks['px']).all()


@pytest.mark.parametrize(
  'values', [['500', '100'], ['100', '100'], ['0'], ['1e5'], []]
)
def test_train_sizes_are_positive_increasing_integers(values):
  with pytest.raises(app.UsageError, match='--train_sizes'):
    scale.train_sizes(values)


def test_scale_table_rows():
  points = [
    {
      'train_events': 150000,
      'dnn': {'q': 0.30, 'q_err': 0.0023, 'auc': 0.81},
      'dnn_symmetric': {'q': 0.315, 'q_err': 0.0024, 'auc': 0.82},
      'category': {'q': 0.35, 'q_err': 0.0024, 'auc': 0.84},
      'epochs': 22,
      'best_epoch': 11,
    }
  ]
  table = scale.scale_table(points).splitlines()
  assert len(table) == 3
  # 0.315 / 0.35 = 0.9
  assert table[2] == (
    '| 150,000 | 30.00 +- 0.23 | 31.50 +- 0.24 | 35.00 +- 0.24 | 0.900 '
    '| 0.8200 | 0.8400 | 11 / 22 |'
  )


def test_scale_program_writes_one_row_per_size(tmp_path):
  out_dir = tmp_path / 'scale'
  subprocess.run(
    [
      sys.executable,
      '-m',
      'experiments.scale',
      '--config=experiments/configs/smoke.py',
      '--config.num_epochs=2',
      '--train_sizes=1500,3000',
      '--num_test_events=1000',
      '--num_trees=5',
      '--num_workers=1',
      f'--out_dir={out_dir}',
    ],
    cwd=REPO_ROOT,
    check=True,
    capture_output=True,
    timeout=300,
  )
  points = json.loads((out_dir / scale.SCALE_JSON_FILE).read_text())
  assert [p['train_events'] for p in points] == [1500, 3000]
  for p in points:
    assert p['dnn']['n_events'] == p['category']['n_events'] == 1000
    assert p['epochs'] == 2
    point_dir = out_dir / f'train_{p["train_events"]}'
    table = (point_dir / scale.CATEGORY_TABLE_FILE).read_text().splitlines()
    # Header, separator, 13 categories, the combination and both DNNs.
    assert len(table) == 2 + 13 + 3
    assert (point_dir / 'report' / 'report.md').is_file()
  rows = (out_dir / scale.SCALE_TABLE_FILE).read_text().splitlines()[2:]
  assert len(rows) == 2
  ratio = points[1]['dnn_symmetric']['q'] / points[1]['category']['q']
  assert f'| {ratio:.3f} |' in rows[1]
