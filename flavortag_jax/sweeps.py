"""Hyperparameter sweeps: many deep taggers trained as one vmapped program.

A sweep varies one setting of a run config over a list of values (and,
optionally, over several seeds per value). Settings that keep the shapes of
the parameters (the weight decay, the initial learning rate, the seed, the
dropout rate) are *traced*: the K models of a sweep are stacked along a
leading model axis and trained by one jitted, vmapped epoch on the same
batches, their learning rate, momentum and weight decay being arrays in the
optimizer state (optax.inject_hyperparams), their dropout rates an array in
the train state, and their seeds giving their initialization and dropout
keys. Settings that change shapes (the number of hidden layers, the width)
split the sweep into groups, one compiled program per group. A group draws
dropout masks when any of its models has a dropout rate above 0; a model
with rate 0 then keeps every unit.

Every model keeps its own early stopping (the rule of `train.EarlyStopping`,
on its own validation loss) and its own best parameters. A boolean mask of
the models still training enters the compiled epoch: a stopped model's state
is carried through unchanged (jnp.where on the update) while the others
continue, and the sweep ends when every model has stopped or at
`num_epochs`. A model whose training loss becomes NaN or infinite is marked
diverged and stopped; the others go on.

Model k of a sweep equals the single run of `train.train_and_evaluate` with
the same config: the same initialization key fold_in(key(seed), 0), the same
dropout key fold_in(key(seed), 2) and the same batches, shuffled by
fold_in(key(config.seed), 1) of the base config.

NOTE: in a sweep over seeds all models still see the batches shuffled with
the base config's seed, so the spread over seeds measures the initialization
and dropout, not the order of the events.
"""

from collections.abc import Sequence
import dataclasses
import json
import math
import os
import pathlib
import time
from typing import Any

from absl import logging
import jax
import jax.numpy as jnp
from matplotlib.figure import Figure
import ml_collections
import numpy as np

from flavortag_jax import models, optim, parallel, pipeline, train, writers

SWEEP_FILE = 'sweep.json'


@dataclasses.dataclass(frozen=True)
class SweepParameter:
  """A run-config setting that a sweep can vary.

  Attributes:
    path: Keys leading to the setting in the run config.
    traced: True when models that differ only in this setting share one
      compiled program (the value is an array in the train state).
    dtype: Python type of the values.
    label: Axis label of the sweep's plot.
    log_scale: Whether the plot's axis is logarithmic.
  """

  path: tuple[str, ...]
  traced: bool
  dtype: type
  label: str
  log_scale: bool = False


PARAMETERS: dict[str, SweepParameter] = {
  'weight_decay': SweepParameter(
    ('weight_decay',), True, float, r'L2 weight decay $\alpha$', True
  ),
  'learning_rate': SweepParameter(
    ('learning_rate',), True, float, r'learning rate $\eta$ of epoch 0', True
  ),
  'seed': SweepParameter(('seed',), True, int, 'seed'),
  'depth': SweepParameter(
    ('model', 'num_hidden_layers'), False, int, 'hidden layers'
  ),
  'width': SweepParameter(
    ('model', 'width'), False, int, 'units per hidden layer', True
  ),
  'dropout_rate': SweepParameter(
    ('model', 'dropout_rate'), True, float, 'dropout rate'
  ),
}

# Config fields (paths of keys) that may differ between models of one
# compiled program.
_TRACED_FIELDS = (
  ('weight_decay',),
  ('learning_rate',),
  ('seed',),
  ('name',),
  ('model', 'dropout_rate'),
)


@dataclasses.dataclass(frozen=True)
class SweepPoint:
  """One model of a sweep: its swept value, seed and full run config."""

  value: float | int
  seed: int
  config: ml_collections.ConfigDict


@dataclasses.dataclass
class ModelResult:
  """What training left of one model of a group.

  Attributes:
    best_params: Parameters of the epoch with the lowest validation loss.
    early_stopping: Its final early-stopping state.
    epochs: Epochs the model trained (it stops changing afterwards).
    diverged: Whether its training loss became NaN or infinite.
    history: One record per trained epoch (epoch, train_loss, valid_loss,
      valid_auc, valid_q, learning_rate, momentum).
  """

  best_params: Any
  early_stopping: train.EarlyStopping
  epochs: int
  diverged: bool
  history: list[dict[str, float]]


def sweep_points(
  config: ml_collections.ConfigDict,
  name: str,
  values: Sequence[float | int],
  seeds: Sequence[int] = (),
) -> list[SweepPoint]:
  """Expands a base config into the run configs of a sweep.

  Args:
    config: The base run config (experiments/configs/default.py fields).
    name: The swept setting, a key of PARAMETERS.
    values: Its values, at least one.
    seeds: Seeds trained for every value; empty for the base config's seed.
      Ignored when the seed itself is swept.

  Returns:
    One SweepPoint per (value, seed), values outermost.

  Raises:
    ValueError: An unknown setting, no values, repeated values, or a value
      the network or optimizer rejects.
  """
  if name not in PARAMETERS:
    raise ValueError(
      f'Cannot sweep {name!r}; choose one of {sorted(PARAMETERS)}.'
    )
  parameter = PARAMETERS[name]
  values = [parameter.dtype(v) for v in values]
  if not values:
    raise ValueError(f'The {name} sweep has no values; give at least one.')
  if len(set(values)) != len(values):
    raise ValueError(f'The {name} sweep repeats a value: {values}.')
  seeds = [config.seed] if name == 'seed' or not seeds else list(seeds)

  points = []
  for value in values:
    for seed in seeds:
      point = ml_collections.ConfigDict(config.to_dict())
      node = point
      for key in parameter.path[:-1]:
        node = node[key]
      node[parameter.path[-1]] = value
      if name != 'seed':
        point.seed = int(seed)
      suffix = '' if len(seeds) == 1 else f'_seed={seed}'
      point.name = f'{name}={value:g}{suffix}'
      train.check_config(point)
      points.append(SweepPoint(value, int(point.seed), point))
  return points


def program_groups(
  configs: Sequence[ml_collections.ConfigDict],
) -> list[list[int]]:
  """Indices of the run configs that share one compiled program, in order.

  Configs share a program when they differ only in traced fields (weight
  decay, learning rate, seed, dropout rate).
  """
  groups: dict[str, list[int]] = {}
  for index, config in enumerate(configs):
    fields = config.to_dict()
    for path in _TRACED_FIELDS:
      node = fields
      for key in path[:-1]:
        node = node.get(key, {})
      node.pop(path[-1], None)
    groups.setdefault(json.dumps(fields, sort_keys=True), []).append(index)
  return list(groups.values())


def stack_train_states(
  configs: Sequence[ml_collections.ConfigDict],
) -> train.TrainState:
  """Initial train states of K models stacked along a leading model axis.

  Args:
    configs: Run configs that differ only in traced fields.

  Returns:
    A TrainState whose array leaves have shape [K, ...]: model k's
    parameters from fold_in(key(seed_k), 0), its optimizer state with its
    own weight decay and epoch-0 learning rate and momentum, and its
    dropout rate (dropout_rate shape [K]; None when every rate is 0).
  """
  states = [
    train.create_train_state(c, jax.random.fold_in(jax.random.key(c.seed), 0))
    for c in configs
  ]
  stack = lambda *leaves: jnp.stack(leaves)
  rates = [c.model.dropout_rate for c in configs]
  return states[0].replace(
    step=jnp.zeros(len(states), jnp.int32),
    params=jax.tree.map(stack, *[s.params for s in states]),
    opt_state=jax.tree.map(stack, *[s.opt_state for s in states]),
    dropout_rate=jnp.asarray(rates, jnp.float32) if any(rates) else None,
  )


def set_epoch(
  opt_state: Any, opt_configs: Sequence[optim.OptimizerConfig], epoch: int
) -> Any:
  """Sets every model's learning rate and momentum for `epoch`.

  Args:
    opt_state: Stacked optimizer state of K models.
    opt_configs: The K models' optimizer settings.
    epoch: The epoch about to be trained, from 0.

  Returns:
    The state with hyperparams learning_rate and momentum of shape [K].
  """
  hyperparams = dict(opt_state.hyperparams)
  hyperparams['learning_rate'] = jnp.stack(
    [c.learning_rate_at(epoch) for c in opt_configs]
  )
  hyperparams['momentum'] = jnp.stack(
    [c.momentum_at(epoch) for c in opt_configs]
  )
  return opt_state._replace(hyperparams=hyperparams)


def masked_epoch(
  state: train.TrainState,
  x: jax.Array,
  y: jax.Array,
  key: jax.Array,
  active: jax.Array,
) -> tuple[train.TrainState, dict[str, jax.Array]]:
  """`train.train_epoch` for one model, skipped when it no longer trains.

  Args:
    state: One model's train state.
    x: Batches of features, shape [steps, batch, 140].
    y: Batches of labels, shape [steps, batch].
    key: The model's dropout key of this epoch.
    active: Scalar bool: whether the model still trains.

  Returns:
    The state after the epoch (unchanged when not active) and the metrics
    of every step, each shape [steps].
  """
  trained, step_metrics = train.train_epoch(state, x, y, key)
  state = jax.tree.map(
    lambda new, old: jnp.where(active, new, old), trained, state
  )
  return state, step_metrics


# The epoch of K stacked models on shared batches: one program per shape.
sweep_epoch = jax.jit(
  jax.vmap(masked_epoch, in_axes=(0, None, None, 0, 0)), donate_argnums=0
)


@jax.jit
def _keep_best(best_params: Any, params: Any, improved: jax.Array) -> Any:
  """Model k's params replace its best ones where improved[k] (shape [K])."""

  def choose(best, new):
    mask = improved.reshape((-1,) + (1,) * (new.ndim - 1))
    return jnp.where(mask, new, best)

  return jax.tree.map(choose, best_params, params)


def model_slice(tree: Any, k: int) -> Any:
  """Model k's entries of a stacked pytree."""
  return jax.tree.map(lambda leaf: leaf[k], tree)


def train_group(
  configs: Sequence[ml_collections.ConfigDict],
  train_set: pipeline.Dataset,
  valid_set: pipeline.Dataset,
  *,
  shuffle_key: jax.Array,
  mesh: jax.sharding.Mesh | None = None,
  logdirs: Sequence[str | os.PathLike] | None = None,
) -> list[ModelResult]:
  """Trains K models that share one program, with early stopping per model.

  Args:
    configs: K run configs differing only in traced fields (see
      `program_groups`); the first gives the shared settings (batch size,
      epochs, early-stopping rule).
    train_set: Training events (features [n, 140] on the device).
    valid_set: Validation events for early stopping.
    shuffle_key: Key of the shared batches; epoch e uses fold_in(key, e).
    mesh: Optional data mesh: batches split over its devices, the K
      models replicated.
    logdirs: Optional TensorBoard folder per model.

  Returns:
    One ModelResult per config, in order.

  Raises:
    ValueError: The configs do not share one program, or the train split
      is smaller than a batch.
  """
  configs = list(configs)
  if len(program_groups(configs)) != 1:
    traced = ', '.join('.'.join(path) for path in _TRACED_FIELDS)
    raise ValueError(
      f'The models of one vmapped group must differ only in {traced}; split '
      'the sweep with program_groups first.'
    )
  base = configs[0]
  num_models = len(configs)
  opt_configs = [optim.OptimizerConfig.from_config(c) for c in configs]

  state = stack_train_states(configs)
  dropout_keys = jnp.stack(
    [jax.random.fold_in(jax.random.key(c.seed), 2) for c in configs]
  )
  batch_sharding = None
  if mesh is not None:
    state = parallel.replicate(state, mesh)
    batch_sharding = pipeline.batch_sharding(mesh)
  best_params = jax.tree.map(jnp.copy, state.params)

  model = models.MLP(train.model_config(base))
  logits_fn = train.make_logits_fn(model, base.eval_batch_size)
  stopping = [train.EarlyStopping() for _ in configs]
  active = np.ones(num_models, bool)
  diverged = np.zeros(num_models, bool)
  epochs = np.zeros(num_models, int)
  histories: list[list[dict[str, float]]] = [[] for _ in configs]
  metric_writers = [writers.MetricWriter(d) for d in logdirs or ()]

  try:
    for epoch in range(base.num_epochs):
      if not active.any():
        break
      start = time.perf_counter()
      state = state.replace(
        opt_state=set_epoch(state.opt_state, opt_configs, epoch)
      )
      x, y = pipeline.epoch_batches(
        train_set.features,
        train_set.labels,
        jax.random.fold_in(shuffle_key, epoch),
        base.batch_size,
        sharding=batch_sharding,
      )
      epoch_keys = jax.vmap(jax.random.fold_in, in_axes=(0, None))(
        dropout_keys, epoch
      )
      learning_rates = np.asarray(state.opt_state.hyperparams['learning_rate'])
      momenta = np.asarray(state.opt_state.hyperparams['momentum'])
      was_active = active.copy()
      state, step_metrics = sweep_epoch(
        state, x, y, epoch_keys, jnp.asarray(was_active)
      )
      losses = np.asarray(step_metrics['loss'])  # [K, steps]; waits
      seconds = time.perf_counter() - start

      improved = np.zeros(num_models, bool)
      for k in np.flatnonzero(was_active):
        epochs[k] = epoch + 1
        if not np.isfinite(losses[k]).all():
          diverged[k], active[k] = True, False
          logging.warning(
            'Model %s diverged in epoch %d (training loss not finite); '
            'it stops, the others go on.',
            configs[k].name,
            epoch,
          )
          continue
        summary, _ = train.evaluate_split(
          logits_fn,
          model_slice(state.params, k),
          valid_set.features,
          valid_set.labels,
          valid_set.q_tag,
        )
        stopping[k], improved[k] = stopping[k].update(
          epoch,
          summary['loss'],
          min_epochs=base.min_epochs,
          patience=base.patience,
          min_relative_improvement=base.min_relative_improvement,
        )
        active[k] = not stopping[k].should_stop
        record = {
          'epoch': epoch,
          'train_loss': float(losses[k].mean()),
          'valid_loss': summary['loss'],
          'valid_auc': summary['auc'],
          'valid_q': summary['q'],
          'learning_rate': float(learning_rates[k]),
          'momentum': float(momenta[k]),
        }
        histories[k].append(record)
        if metric_writers:
          metric_writers[k].write_scalars(
            epoch,
            {
              'train/loss': record['train_loss'],
              'valid/loss': record['valid_loss'],
              'valid/auc': record['valid_auc'],
              'valid/q': record['valid_q'],
              'learning_rate': record['learning_rate'],
              'momentum': record['momentum'],
            },
          )
      if improved.any():
        best_params = _keep_best(best_params, state.params, improved)

      events = int(was_active.sum()) * x.shape[0] * x.shape[1]
      logging.info(
        'Epoch %d: %d of %d models trained, %.1f s, %.0f events/s; %d still '
        'training',
        epoch,
        int(was_active.sum()),
        num_models,
        seconds,
        events / seconds,
        int(active.sum()),
      )
  finally:
    for writer in metric_writers:
      writer.close()

  return [
    ModelResult(
      best_params=model_slice(best_params, k),
      early_stopping=stopping[k],
      epochs=int(epochs[k]),
      diverged=bool(diverged[k]),
      history=histories[k],
    )
    for k in range(num_models)
  ]


def _summary_without_bins(summary: dict[str, Any]) -> dict[str, Any]:
  return {k: v for k, v in summary.items() if k != 'bins'}


def _finite_or_none(value: float) -> float | None:
  return value if math.isfinite(value) else None


def run_sweep(
  config: ml_collections.ConfigDict,
  workdir: str | os.PathLike,
  name: str | None = None,
) -> list[dict[str, Any]]:
  """Runs a sweep end to end and writes sweep.json and its plot.

  Reads and splits the events once, trains every group of the sweep
  (`program_groups`), evaluates each model's best parameters on the
  validation and test splits and writes into `workdir`:

    config.json          the base config
    sweep.json           one record per model (see Returns)
    q_vs_{name}.png      validation and test Q against the swept value
    tensorboard/{model}  per-model TensorBoard logs

  Args:
    config: A sweep config (experiments/configs/sweep_depth.py): a run
      config plus a `sweep` block with `name`, `seeds` and `grid`, a
      tuple of values for each sweepable setting.
    workdir: Output folder, created if missing.
    name: The setting to sweep; None for config.sweep.name.

  Returns:
    The records of sweep.json: name, value, seed, model, valid and test
    (metrics.summary without the per-bin table, plus loss), best_epoch,
    epochs, early_stopped, diverged.
  """
  name = name or config.sweep.name
  if name not in config.sweep.grid:
    raise ValueError(
      f'The config lists no values for a {name} sweep; set '
      f'config.sweep.grid.{name} or choose one of '
      f'{sorted(config.sweep.grid)}.'
    )
  run_config = ml_collections.ConfigDict(config.to_dict())
  del run_config['sweep']
  points = sweep_points(
    run_config, name, config.sweep.grid[name], config.sweep.seeds
  )
  workdir = pathlib.Path(workdir)
  # On several hosts every process trains; process 0 alone writes.
  writes = jax.process_index() == 0
  if writes:
    workdir.mkdir(parents=True, exist_ok=True)
    writers.write_json(workdir / 'config.json', json.loads(config.to_json()))

  splits = train.load_splits(config)
  groups = program_groups([p.config for p in points])
  logging.info(
    'Sweep of %s over %d models in %d compiled group(s); events: %d train, '
    '%d valid, %d test; %s',
    name,
    len(points),
    len(groups),
    splits.train.num_events,
    splits.valid.num_events,
    splits.test.num_events,
    parallel.describe_devices(),
  )
  mesh = parallel.mesh_from_config(config)
  shuffle_key = jax.random.fold_in(jax.random.key(config.seed), 1)

  records = []
  for group in groups:
    configs = [points[i].config for i in group]
    start = time.perf_counter()
    results = train_group(
      configs,
      splits.train,
      splits.valid,
      shuffle_key=shuffle_key,
      mesh=mesh,
      logdirs=[workdir / 'tensorboard' / c.name for c in configs]
      if writes
      else None,
    )
    seconds = time.perf_counter() - start
    model = models.MLP(train.model_config(configs[0]))
    logits_fn = train.make_logits_fn(model, config.eval_batch_size)
    for index, result in zip(group, results, strict=True):
      point = points[index]
      record = {
        'name': name,
        'value': point.value,
        'seed': point.seed,
        'model': point.config.name,
        'best_epoch': result.early_stopping.best_epoch,
        'epochs': result.epochs,
        'early_stopped': result.early_stopping.should_stop,
        'diverged': result.diverged,
        'group_seconds': seconds,
      }
      for split_name, dataset in (
        ('valid', splits.valid),
        ('test', splits.test),
      ):
        summary, _ = train.evaluate_split(
          logits_fn,
          result.best_params,
          dataset.features,
          dataset.labels,
          dataset.q_tag,
        )
        summary = _summary_without_bins(summary)
        summary['loss'] = _finite_or_none(summary['loss'])
        record[split_name] = summary
      records.append(record)
      logging.info(
        '%s: best epoch %d of %d; valid Q %.4f +- %.4f; test Q %.4f +- '
        '%.4f, AUC %.4f',
        point.config.name,
        record['best_epoch'],
        record['epochs'],
        record['valid']['q'],
        record['valid']['q_err'],
        record['test']['q'],
        record['test']['q_err'],
        record['test']['auc'],
      )
    # Written after every group, so a long sweep shows its progress.
    if writes:
      writers.write_json(workdir / SWEEP_FILE, records)

  if writes:
    plot_sweep(records, workdir / f'q_vs_{name}.png')
  return records


def plot_sweep(
  records: Sequence[dict[str, Any]], path: str | os.PathLike
) -> pathlib.Path:
  """Draws validation and test Q against the swept value.

  Points with several seeds show the mean over seeds, with the seeds as
  small dots; error bars are the statistical errors of Q (the mean of the
  seeds' errors). All points are evaluated on the same events, so their
  errors are strongly correlated and differences between points are known
  better than the bars suggest. On a logarithmic axis a value of 0 cannot
  be placed; it is drawn as a horizontal band (mean +- error).

  Args:
    records: The records of sweep.json, all of one swept setting.
    path: The PNG file to write.

  Returns:
    The path written.
  """
  name = records[0]['name']
  parameter = PARAMETERS[name]
  figure = Figure(figsize=(6.4, 4.4))
  axes = figure.add_subplot()
  # Color, marker and a small sideways shift that keeps the bars apart.
  styles = {'valid': ('tab:blue', 'o', -1), 'test': ('tab:red', 's', 1)}
  values = sorted({r['value'] for r in records})
  spacing = np.diff(values).min() if len(values) > 1 else 1.0

  def shifted(x, side):
    if parameter.log_scale:
      return np.asarray(x, float) * 10.0 ** (0.012 * side)
    return np.asarray(x, float) + 0.06 * spacing * side

  for split, (color, marker, side) in styles.items():
    means, errors = [], []
    for value in values:
      chosen = [r for r in records if r['value'] == value and not r['diverged']]
      q = np.array([r[split]['q'] for r in chosen], float)
      q_err = np.array([r[split]['q_err'] for r in chosen], float)
      means.append(q.mean() if q.size else np.nan)
      errors.append(q_err.mean() if q.size else np.nan)
      if q.size > 1 and (value > 0 or not parameter.log_scale):
        axes.plot(
          shifted([value] * q.size, side), 100 * q, '.', color=color, alpha=0.4
        )
    means, errors = 100 * np.array(means), 100 * np.array(errors)
    x = np.array(values, float)
    shown = x > 0 if parameter.log_scale else np.ones_like(x, bool)
    axes.errorbar(
      shifted(x[shown], side),
      means[shown],
      yerr=errors[shown],
      color=color,
      marker=marker,
      linestyle='-',
      capsize=3,
      label=f'{split} Q',
    )
    if parameter.log_scale and not shown.all():
      zero = np.flatnonzero(~shown)[0]
      axes.axhspan(
        means[zero] - errors[zero],
        means[zero] + errors[zero],
        color=color,
        alpha=0.15,
        label=f'{split} Q at {name} = 0',
      )
      axes.axhline(means[zero], color=color, linestyle=':', linewidth=1)

  if parameter.log_scale:
    axes.set_xscale('log')
  elif parameter.dtype is int:
    axes.set_xticks(values)
  axes.set_xlabel(parameter.label)
  axes.set_ylabel('effective tagging efficiency Q [%]')
  axes.set_title(f'Q against {parameter.label}')
  axes.grid(alpha=0.3)
  axes.legend(fontsize='small')
  figure.tight_layout()

  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  tmp = path.with_name(f'.{path.stem}.{os.getpid()}.tmp.png')
  try:
    figure.savefig(tmp, format='png', dpi=110)
    os.replace(tmp, path)
  finally:
    if tmp.exists():
      tmp.unlink()
  return path
