"""Training and evaluation of the deep flavor tagger.

`train_and_evaluate(config, workdir)` runs the reference recipe (DESIGN,
Reference training recipe) end to end: it reads and splits the events, fits
the normalizer, trains the MLP epoch by epoch with early stopping, and writes
the trained tagger into `workdir`:

  config.json        the run config
  checkpoints/       Orbax checkpoints; a run started again resumes from them
  tensorboard/       TensorBoard event files
  activations.h5     hidden activations of a fixed probe set of events
  params.msgpack     the best parameters (lowest validation loss)
  normalizer.npz     the fitted quantile normalizer
  tagger.json        what `load_predictor` needs to rebuild the tagger
  history.json       one record per epoch
  metrics.json       metrics.summary of the validation and test splits
  outputs.npz        qr and true q on (part of) the train and the test split

The building blocks are pure and composable: `create_train_state`,
`train_step` and `train_epoch` (one `lax.scan` over the batches of an epoch)
can be vmapped over a stack of models or run with sharded batches.
"""

from collections.abc import Callable, Mapping
import dataclasses
import json
import math
import os
import pathlib
import time
from typing import Any

from absl import logging
import flax
from flax.training import train_state as train_state_lib
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import orbax.checkpoint as ocp

from flavortag_jax import features as features_lib
from flavortag_jax import metrics as metrics_lib
from flavortag_jax import models, optim, parallel, pipeline, shards, writers
from flavortag_jax import normalizer as normalizer_lib

TAGGER_SCHEMA_VERSION = 1
PARAMS_FILE = 'params.msgpack'
NORMALIZER_FILE = 'normalizer.npz'
# Events of the train split whose outputs are kept for the overtraining check.
MAX_TRAIN_OUTPUTS = 100_000


class TrainState(train_state_lib.TrainState):
  """Flax's train state plus the dropout rate of the network in training.

  Attributes:
    dropout_rate: Probability of dropping a hidden unit, a float32 array of
      shape [] (shape [K] for K stacked models): an input of the compiled
      step rather than a constant in it, so that models with different
      rates train together under jax.vmap. None when no model drops units:
      the step then contains no dropout at all (drawing the dropout masks
      makes a CPU training step of the reference network about 1.4 times
      slower).
  """

  dropout_rate: jax.Array | None = None


def model_config(config: ml_collections.ConfigDict) -> models.MLPConfig:
  """The network settings of a run config (its `model` block)."""
  return models.MLPConfig(**config.model.to_dict())


def create_train_state(
  config: ml_collections.ConfigDict,
  key: jax.Array,
  num_features: int = features_lib.NUM_FEATURES,
) -> TrainState:
  """Initializes the network and the optimizer for epoch 0.

  Args:
    config: Run config (model block and optimizer fields).
    key: Key for the weight initialization.
    num_features: Input features per event.

  Returns:
    A TrainState: step 0, fresh parameters, optimizer state with the
    learning rate and momentum of epoch 0, the network's dropout rate
    (None for a rate of 0).
  """
  network = model_config(config)
  model = models.MLP(network)
  params = model.init(key, jnp.zeros((1, num_features), jnp.float32))['params']
  tx = optim.make_optimizer(config)
  opt_state = optim.at_epoch(tx.init(params), config, 0)
  return TrainState(
    step=jnp.zeros((), jnp.int32),
    apply_fn=model.apply,
    params=params,
    tx=tx,
    opt_state=opt_state,
    dropout_rate=(
      jnp.asarray(network.dropout_rate, jnp.float32)
      if network.dropout_rate > 0.0
      else None
    ),
  )


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """Mean binary cross-entropy E of B0 logits [batch] and labels [batch]."""
  return optax.sigmoid_binary_cross_entropy(logits, labels).mean()


def train_step(
  state: TrainState, batch: tuple[jax.Array, jax.Array], key: jax.Array
) -> tuple[TrainState, dict[str, jax.Array]]:
  """One SGD step on a batch.

  Args:
    state: The train state; its dropout_rate applies to the hidden units.
    batch: Features [batch, 140] and labels [batch] (1.0 for B0).
    key: Key of this step (dropout).

  Returns:
    The new state and metrics of the batch before the update: loss (the
    cross-entropy E without the L2 term, which the optimizer applies) and
    accuracy, scalars.
  """
  x, labels = batch

  def loss_fn(params):
    logits = state.apply_fn(
      {'params': params},
      x,
      train=True,
      dropout_rate=0.0 if state.dropout_rate is None else state.dropout_rate,
      rngs={'dropout': key},
    )
    return cross_entropy(logits, labels), logits

  (loss, logits), grads = jax.value_and_grad(loss_fn, has_aux=True)(
    state.params
  )
  state = state.apply_gradients(grads=grads)
  accuracy = jnp.mean((logits > 0) == (labels > 0.5))
  return state, {'loss': loss, 'accuracy': accuracy}


def train_epoch(
  state: TrainState, x: jax.Array, y: jax.Array, key: jax.Array
) -> tuple[TrainState, dict[str, jax.Array]]:
  """Trains over the batches of one epoch as one `lax.scan`.

  Args:
    state: The train state, its hyperparameters set for this epoch.
    x: Batches of features, shape [steps, batch, 140].
    y: Batches of labels, shape [steps, batch].
    key: Key of this epoch; step s uses fold_in(key, s).

  Returns:
    The state after the epoch and the metrics of every step, each shape
    [steps].
  """

  def body(state, inputs):
    step, x_batch, y_batch = inputs
    return train_step(state, (x_batch, y_batch), jax.random.fold_in(key, step))

  steps = jnp.arange(x.shape[0], dtype=jnp.int32)
  return jax.lax.scan(body, state, (steps, x, y))


def make_logits_fn(
  model: models.MLP, chunk_size: int
) -> Callable[[Any, jax.Array], jax.Array]:
  """A jitted forward pass over any number of events, in fixed chunks.

  Args:
    model: The network.
    chunk_size: Events per forward pass (bounds the memory of activations).

  Returns:
    fn(params, features [n, 140]) -> logits [n]; compiled once per n.
  """

  @jax.jit
  def logits_fn(params, features):
    n = features.shape[0]
    chunks = -(-n // chunk_size)
    padded = jnp.pad(features, ((0, chunks * chunk_size - n), (0, 0)))
    padded = padded.reshape(chunks, chunk_size, features.shape[1])
    logits = jax.lax.map(lambda x: model.apply({'params': params}, x), padded)
    return logits.reshape(-1)[:n]

  return logits_fn


def qr_from_logits(logits: np.ndarray) -> np.ndarray:
  """Tagger output qr = 2 sigmoid(l) - 1 = tanh(l / 2), shape as `logits`."""
  return np.tanh(np.asarray(logits, np.float64) / 2.0)


def _cross_entropy_np(logits: np.ndarray, labels: np.ndarray) -> float:
  logits = np.asarray(logits, np.float64)
  labels = np.asarray(labels, np.float64)
  per_event = (
    np.maximum(logits, 0.0)
    - logits * labels
    + np.log1p(np.exp(-np.abs(logits)))
  )
  return float(per_event.mean())


def evaluate_split(
  logits_fn: Callable[[Any, jax.Array], jax.Array],
  params: Any,
  features: jax.Array,
  labels: np.ndarray,
  q_tag: np.ndarray,
) -> tuple[dict[str, Any], np.ndarray]:
  """Evaluates parameters on a set of events.

  Args:
    logits_fn: From `make_logits_fn`.
    params: Network parameters.
    features: Normalized features, shape [n, 140].
    labels: Labels, shape [n] (1.0 for B0).
    q_tag: True tag-side flavors, shape [n] (+1 or -1).

  Returns:
    metrics.summary of the outputs plus 'loss' (mean cross-entropy), and
    qr, shape [n].
  """
  logits = np.asarray(logits_fn(params, features))
  qr = qr_from_logits(logits)
  summary = metrics_lib.summary(qr, q_tag)
  summary['loss'] = _cross_entropy_np(logits, np.asarray(labels))
  return summary, qr


@dataclasses.dataclass(frozen=True)
class EarlyStopping:
  """Early-stopping bookkeeping on the validation loss.

  An epoch improves on the best loss L_best when its loss L satisfies
  L < L_best (1 - min_relative_improvement). Training stops once `patience`
  epochs in a row did not improve and at least `min_epochs` epochs ran.

  Attributes:
    best_loss: Lowest validation loss so far (inf before the first epoch).
    best_epoch: Epoch of best_loss, -1 before the first epoch.
    epochs_without_improvement: Epochs since the last improvement.
    should_stop: Whether training is over.
  """

  best_loss: float = math.inf
  best_epoch: int = -1
  epochs_without_improvement: int = 0
  should_stop: bool = False

  def update(
    self,
    epoch: int,
    loss: float,
    *,
    min_epochs: int,
    patience: int,
    min_relative_improvement: float,
  ) -> tuple['EarlyStopping', bool]:
    """Returns the state after `epoch` with validation `loss`, and whether
    the epoch improved on the best loss."""
    improved = loss < self.best_loss * (1.0 - min_relative_improvement)
    if improved:
      new = EarlyStopping(loss, epoch, 0, False)
    else:
      new = dataclasses.replace(
        self, epochs_without_improvement=self.epochs_without_improvement + 1
      )
    stop = new.epochs_without_improvement >= patience and epoch + 1 >= (
      min_epochs
    )
    return dataclasses.replace(new, should_stop=stop), improved

  def to_json(self) -> dict[str, Any]:
    content = dataclasses.asdict(self)
    content['best_loss'] = (
      None if math.isinf(self.best_loss) else self.best_loss
    )
    return content

  @classmethod
  def from_json(cls, content: Mapping[str, Any]) -> 'EarlyStopping':
    content = dict(content)
    if content['best_loss'] is None:
      content['best_loss'] = math.inf
    return cls(**content)


def check_config(config: ml_collections.ConfigDict) -> None:
  """Raises ValueError for a config that cannot run, saying what to change."""
  positive = ('batch_size', 'num_epochs', 'eval_batch_size')
  for name in positive:
    if config[name] < 1:
      raise ValueError(
        f'config.{name} must be at least 1, found {config[name]}'
      )
  for name in (
    'checkpoint_every_epochs',
    'probe_every_epochs',
    'log_histograms_every_epochs',
  ):
    if config[name] < 0:
      raise ValueError(
        f'config.{name} must be 0 (off) or a number of epochs, found '
        f'{config[name]}'
      )
  if config.patience < 1:
    raise ValueError(
      f'config.patience must be at least 1, found {config.patience}'
    )
  if not 0.0 <= config.min_relative_improvement < 1.0:
    raise ValueError(
      'config.min_relative_improvement must lie in [0, 1), found '
      f'{config.min_relative_improvement}'
    )
  if config.probe_size < 0 or config.train_eval_size < 1:
    raise ValueError(
      'config.probe_size must be >= 0 and config.train_eval_size >= 1, found '
      f'{config.probe_size} and {config.train_eval_size}'
    )
  # Both raise a ValueError naming the bad field.
  model_config(config)
  optim.OptimizerConfig.from_config(config)


def _every(epoch: int, period: int) -> bool:
  """True after every `period`-th epoch (epochs counted from 0); 0 is off."""
  return period > 0 and (epoch + 1) % period == 0


def raise_if_not_finite(losses: np.ndarray, epoch: int) -> None:
  """Raises FloatingPointError naming the first step whose loss is NaN/inf.

  Args:
    losses: Training loss of every step of the epoch, shape [steps].
    epoch: The epoch, counted from 0.
  """
  bad = np.flatnonzero(~np.isfinite(losses))
  if bad.size:
    step = int(bad[0])
    raise FloatingPointError(
      f'the training loss became {losses[step]} at epoch {epoch}, step '
      f'{step} of {losses.size}; the network diverged. Lower '
      'config.learning_rate, check the input features for extreme values, '
      'or restart from an earlier checkpoint in a fresh workdir.'
    )


def _weight_norms(params: Any) -> dict[str, float]:
  return {
    f'weights/{layer}_norm': float(np.linalg.norm(np.asarray(p['kernel'])))
    for layer, p in params.items()
  }


def _save_params(path: pathlib.Path, params: Any) -> None:
  tmp = path.with_name(f'.{path.name}.{os.getpid()}.tmp')
  try:
    tmp.write_bytes(flax.serialization.to_bytes(jax.device_get(params)))
    os.replace(tmp, path)
  finally:
    if tmp.exists():
      tmp.unlink()


def _config_differences(
  saved: Mapping[str, Any], current: Mapping[str, Any]
) -> list[str]:
  keys = sorted(set(saved) | set(current))
  return [
    f'{k}: {saved.get(k)!r} -> {current.get(k)!r}'
    for k in keys
    if k != 'num_epochs' and saved.get(k) != current.get(k)
  ]


def _checkpoint_manager(workdir: pathlib.Path) -> ocp.CheckpointManager:
  # Orbax takes absolute paths only; a workdir may be given relative.
  return ocp.CheckpointManager(
    workdir.absolute() / 'checkpoints',
    options=ocp.CheckpointManagerOptions(
      max_to_keep=2, create=True, enable_async_checkpointing=False
    ),
    item_names=('arrays', 'progress'),
  )


@dataclasses.dataclass
class _Progress:
  """What a checkpoint holds besides arrays."""

  epoch: int = 0  # epochs completed
  early_stopping: EarlyStopping = EarlyStopping()
  history: list[dict[str, Any]] = dataclasses.field(default_factory=list)

  def to_json(self, config: ml_collections.ConfigDict) -> dict[str, Any]:
    return {
      'epoch': self.epoch,
      'early_stopping': self.early_stopping.to_json(),
      'history': self.history,
      'config': json.loads(config.to_json()),
    }


def _save_checkpoint(manager, progress, config, state, best_params, root_key):
  arrays = {
    'params': state.params,
    'opt_state': state.opt_state,
    'step': state.step,
    'best_params': best_params,
    'root_key': jax.random.key_data(root_key),
  }
  manager.save(
    progress.epoch,
    args=ocp.args.Composite(
      arrays=ocp.args.StandardSave(arrays),
      progress=ocp.args.JsonSave(progress.to_json(config)),
    ),
    force=True,
  )
  manager.wait_until_finished()


def _restore_checkpoint(manager, config, state, root_key):
  """Returns (state, best_params, root_key, progress) from the latest save."""
  step = manager.latest_step()
  target = {
    'params': state.params,
    'opt_state': state.opt_state,
    'step': state.step,
    'best_params': state.params,
    'root_key': jax.random.key_data(root_key),
  }
  abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, target)
  restored = manager.restore(
    step,
    args=ocp.args.Composite(
      arrays=ocp.args.StandardRestore(abstract),
      progress=ocp.args.JsonRestore(),
    ),
  )
  arrays, saved = restored['arrays'], restored['progress']
  differences = _config_differences(
    saved['config'], json.loads(config.to_json())
  )
  if differences:
    logging.warning(
      'Resuming with a config that differs from the checkpoint in: %s',
      '; '.join(differences),
    )
  state = state.replace(
    params=arrays['params'], opt_state=arrays['opt_state'], step=arrays['step']
  )
  progress = _Progress(
    epoch=int(saved['epoch']),
    early_stopping=EarlyStopping.from_json(saved['early_stopping']),
    history=list(saved['history']),
  )
  root_key = jax.random.wrap_key_data(arrays['root_key'])
  return state, arrays['best_params'], root_key, progress


def _format_duration(seconds: float) -> str:
  seconds = int(round(seconds))
  hours, rest = divmod(seconds, 3600)
  minutes, seconds = divmod(rest, 60)
  return f'{hours}h{minutes:02d}m{seconds:02d}s'


def _probe(
  dataset: pipeline.Dataset, size: int
) -> tuple[jax.Array, dict[str, np.ndarray]]:
  """The first `size` events of a split and their truth."""
  size = min(size, dataset.num_events)
  truth = {
    'labels': np.asarray(dataset.labels[:size]),
    'q_tag': dataset.q_tag[:size],
    'dt': dataset.dt[:size],
    'tag_flags': dataset.tag_flags[:size],
    'event_index': dataset.event_index[:size],
  }
  return dataset.features[:size], truth


def load_splits(config: ml_collections.ConfigDict) -> pipeline.Splits:
  """The normalized splits of config.data_dir, with at least one batch."""
  splits = pipeline.load_splits(
    config.data_dir,
    seed=config.split_seed,
    fractions=tuple(config.fractions),
    num_bins=config.num_bins,
    momentum_frame=config.momentum_frame,
  )
  if splits.train.num_events < config.batch_size:
    raise ValueError(
      f'the train split has {splits.train.num_events} events, fewer than '
      f'one batch of {config.batch_size}; lower config.batch_size or '
      'generate more events'
    )
  return splits


def train_and_evaluate(
  config: ml_collections.ConfigDict, workdir: str | os.PathLike
) -> dict[str, Any]:
  """Trains the deep flavor tagger and writes it into `workdir`.

  A workdir that holds checkpoints of the same run is resumed: training
  continues after the last saved epoch and ends with the same result as an
  uninterrupted run.

  Args:
    config: Run config (see experiments/configs/default.py).
    workdir: Output folder, created if missing.

  Returns:
    {'valid': summary, 'test': summary} of the best parameters
    (metrics.summary dicts plus 'loss'), and 'best_epoch', 'epochs'.

  Raises:
    ValueError: A bad config or bad data.
    FloatingPointError: The training loss became NaN or infinite.
  """
  check_config(config)
  workdir = pathlib.Path(workdir)
  workdir.mkdir(parents=True, exist_ok=True)
  writers.write_json(workdir / 'config.json', json.loads(config.to_json()))

  splits = load_splits(config)
  train = splits.train
  logging.info(
    'Events: %d train, %d valid, %d test; %s',
    train.num_events,
    splits.valid.num_events,
    splits.test.num_events,
    parallel.describe_devices(),
  )
  splits.normalizer.save(workdir / NORMALIZER_FILE)

  # Named keys, all derived from the seed and stored in the checkpoint.
  root_key = jax.random.key(config.seed)
  state = create_train_state(config, jax.random.fold_in(root_key, 0))
  manager = _checkpoint_manager(workdir)
  if manager.latest_step() is not None:
    state, best_params, root_key, progress = _restore_checkpoint(
      manager, config, state, root_key
    )
    logging.info('Resuming after epoch %d from %s', progress.epoch, workdir)
  else:
    # A copy: the state's buffers are donated to the first epoch.
    best_params = jax.tree.map(jnp.copy, state.params)
    progress = _Progress()
  shuffle_key = jax.random.fold_in(root_key, 1)
  dropout_key = jax.random.fold_in(root_key, 2)

  model = models.MLP(model_config(config))
  logits_fn = make_logits_fn(model, config.eval_batch_size)
  rng = np.random.default_rng(config.seed)
  train_eval = np.sort(
    rng.choice(
      train.num_events,
      min(config.train_eval_size, train.num_events),
      replace=False,
    )
  )

  mesh = parallel.mesh_from_config(config)
  batch_sharding = None
  if mesh is not None:
    state = parallel.replicate(state, mesh)
    batch_sharding = pipeline.batch_sharding(mesh)

  try:
    best_params = _run_epochs(
      config,
      workdir,
      splits,
      state,
      best_params,
      progress,
      keys=(root_key, shuffle_key, dropout_key),
      manager=manager,
      logits_fn=logits_fn,
      model=model,
      train_eval=train_eval,
      batch_sharding=batch_sharding,
    )
  finally:
    manager.close()
  return _finish(
    config, workdir, splits, best_params, progress, logits_fn, train_eval
  )


def _run_epochs(
  config,
  workdir,
  splits,
  state,
  best_params,
  progress,
  *,
  keys,
  manager,
  logits_fn,
  model,
  train_eval,
  batch_sharding,
):
  """The epoch loop; updates `progress` in place, returns the best params."""
  root_key, shuffle_key, dropout_key = keys
  train, valid = splits.train, splits.valid
  train_eval_features = train.features[train_eval]
  opt_config = optim.OptimizerConfig.from_config(config)

  probe_x, probe_truth = _probe(valid, config.probe_size)
  activation_writer = None
  if config.probe_size > 0 and config.probe_every_epochs > 0:
    activation_writer = writers.ActivationWriter(
      workdir / 'activations.h5', probe_truth
    )
  activations_fn = jax.jit(
    lambda params, x: model.apply(
      {'params': params}, x, return_activations=True
    )
  )

  compiled = None
  epoch_seconds = []
  writer = writers.MetricWriter(
    workdir / 'tensorboard', purge_step=progress.epoch or None
  )
  with writer:
    for epoch in range(progress.epoch, config.num_epochs):
      if progress.early_stopping.should_stop:
        break
      start = time.perf_counter()
      state = state.replace(
        opt_state=optim.at_epoch(state.opt_state, opt_config, epoch)
      )
      x, y = pipeline.epoch_batches(
        train.features,
        train.labels,
        jax.random.fold_in(shuffle_key, epoch),
        config.batch_size,
        sharding=batch_sharding,
      )
      epoch_key = jax.random.fold_in(dropout_key, epoch)
      if compiled is None:
        compiled = jax.jit(train_epoch, donate_argnums=0)
        compile_start = time.perf_counter()
        compiled = compiled.lower(state, x, y, epoch_key).compile()
        logging.info(
          'Initial compilation of the training epoch (%d steps of %d '
          'events) took %.1f s',
          x.shape[0],
          x.shape[1],
          time.perf_counter() - compile_start,
        )
        start = time.perf_counter()

      hyperparams = optim.hyperparams(state.opt_state)
      train_start = time.perf_counter()
      state, step_metrics = compiled(state, x, y, epoch_key)
      losses = np.asarray(step_metrics['loss'])  # waits for the epoch
      train_seconds = time.perf_counter() - train_start
      raise_if_not_finite(losses, epoch)

      valid_summary, _ = evaluate_split(
        logits_fn, state.params, valid.features, valid.labels, valid.q_tag
      )
      train_summary, _ = evaluate_split(
        logits_fn,
        state.params,
        train_eval_features,
        train.labels[train_eval],
        train.q_tag[train_eval],
      )
      if not math.isfinite(valid_summary['loss']):
        raise FloatingPointError(
          f'the validation loss became {valid_summary["loss"]} after epoch '
          f'{epoch}; lower config.learning_rate'
        )
      stopping, improved = progress.early_stopping.update(
        epoch,
        valid_summary['loss'],
        min_epochs=config.min_epochs,
        patience=config.patience,
        min_relative_improvement=config.min_relative_improvement,
      )
      if improved:
        # A copy: the state's buffers are donated to the next epoch.
        best_params = jax.tree.map(jnp.copy, state.params)
      progress.early_stopping = stopping
      progress.epoch = epoch + 1

      record = {
        'epoch': epoch,
        'train_loss': float(losses.mean()),
        'train_accuracy': float(np.asarray(step_metrics['accuracy']).mean()),
        'valid_loss': valid_summary['loss'],
        'valid_accuracy': valid_summary['accuracy'],
        'valid_auc': valid_summary['auc'],
        'valid_q': valid_summary['q'],
        'train_eval_loss': train_summary['loss'],
        'train_eval_auc': train_summary['auc'],
        'train_eval_q': train_summary['q'],
        'learning_rate': hyperparams['learning_rate'],
        'momentum': hyperparams['momentum'],
      }
      progress.history.append(record)

      events_per_second = x.shape[0] * x.shape[1] / train_seconds
      scalars = {
        'train/loss': record['train_loss'],
        'train/loss_after_epoch': train_summary['loss'],
        'train/accuracy': train_summary['accuracy'],
        'train/auc': train_summary['auc'],
        'train/q': train_summary['q'],
        'valid/loss': record['valid_loss'],
        'valid/accuracy': record['valid_accuracy'],
        'valid/auc': record['valid_auc'],
        'valid/q': record['valid_q'],
        'learning_rate': record['learning_rate'],
        'momentum': record['momentum'],
        'events_per_second': events_per_second,
        **_weight_norms(state.params),
      }
      writer.write_scalars(epoch, scalars)

      dump_activations = activation_writer is not None and _every(
        epoch, config.probe_every_epochs
      )
      log_histograms = _every(epoch, config.log_histograms_every_epochs)
      if dump_activations or log_histograms:
        _, activations = activations_fn(state.params, probe_x)
        activations = [np.asarray(a) for a in activations]
        if dump_activations:
          activation_writer.write(epoch, activations)
        if log_histograms:
          arrays = {
            f'weights/{layer}': p['kernel'] for layer, p in state.params.items()
          }
          arrays.update(
            {f'activations/hidden_{i}': a for i, a in enumerate(activations)}
          )
          writer.write_histograms(epoch, arrays)

      last = epoch + 1 == config.num_epochs or stopping.should_stop
      if last or _every(epoch, config.checkpoint_every_epochs):
        _save_checkpoint(
          manager, progress, config, state, best_params, root_key
        )

      epoch_seconds.append(time.perf_counter() - start)
      remaining = config.num_epochs - epoch - 1
      logging.info(
        'Epoch %d done (%d of at most %d): %.1f s, %.0f events/s in '
        'training; best valid loss %.5f at epoch %d; ETA at most %s',
        epoch,
        epoch + 1,
        config.num_epochs,
        epoch_seconds[-1],
        events_per_second,
        stopping.best_loss,
        stopping.best_epoch,
        _format_duration(remaining * np.mean(epoch_seconds)),
      )
      if stopping.should_stop:
        logging.info(
          'Early stopping after epoch %d: no relative improvement of %g in '
          'the validation loss for %d epochs; best epoch %d',
          epoch,
          config.min_relative_improvement,
          config.patience,
          stopping.best_epoch,
        )
  return best_params


def _finish(
  config, workdir, splits, best_params, progress, logits_fn, train_eval
):
  """Evaluates the best parameters and writes the tagger's files."""
  best_params = jax.device_get(best_params)
  _save_params(workdir / PARAMS_FILE, best_params)

  results = {}
  outputs = {}
  for name, dataset, index in (
    ('valid', splits.valid, None),
    ('test', splits.test, None),
    ('train', splits.train, train_eval[:MAX_TRAIN_OUTPUTS]),
  ):
    features = dataset.features
    labels, q_tag = np.asarray(dataset.labels), dataset.q_tag
    if index is not None:
      features, labels, q_tag = features[index], labels[index], q_tag[index]
    summary, qr = evaluate_split(
      logits_fn, best_params, features, labels, q_tag
    )
    results[name] = summary
    outputs[f'{name}_qr'] = qr.astype(np.float32)
    outputs[f'{name}_q'] = np.asarray(q_tag, np.int8)

  writers.write_json(
    workdir / 'metrics.json',
    {
      name: {k: v for k, v in results[name].items() if k != 'loss'}
      for name in ('valid', 'test')
    },
  )
  writers.write_json(workdir / 'history.json', progress.history)
  _write_npz(
    workdir / 'outputs.npz',
    {k: v for k, v in outputs.items() if not k.startswith('valid')},
  )
  stopping = progress.early_stopping
  writers.write_json(
    workdir / 'tagger.json',
    {
      'kind': 'dnn',
      'name': config.get('name', 'dnn'),
      'schema_version': TAGGER_SCHEMA_VERSION,
      'events_schema_version': shards.SCHEMA_VERSION,
      'feature_names': list(features_lib.FEATURE_NAMES),
      'momentum_frame': config.momentum_frame,
      'data_dir': str(pathlib.Path(config.data_dir).resolve()),
      'split_seed': config.split_seed,
      'fractions': list(config.fractions),
      'model': dataclasses.asdict(model_config(config)),
      'params': PARAMS_FILE,
      'normalizer': NORMALIZER_FILE,
      'best_epoch': stopping.best_epoch,
      'epochs_trained': progress.epoch,
      'early_stopped': stopping.should_stop,
    },
  )
  logging.info(
    'Best epoch %d of %d: valid Q %.4f +- %.4f, AUC %.4f; test Q %.4f +- '
    '%.4f, AUC %.4f; tagger written to %s',
    stopping.best_epoch,
    progress.epoch,
    results['valid']['q'],
    results['valid']['q_err'],
    results['valid']['auc'],
    results['test']['q'],
    results['test']['q_err'],
    results['test']['auc'],
    workdir,
  )
  return {
    'valid': results['valid'],
    'test': results['test'],
    'best_epoch': stopping.best_epoch,
    'epochs': progress.epoch,
  }


def _write_npz(path: pathlib.Path, arrays: Mapping[str, np.ndarray]) -> None:
  tmp = path.with_name(f'.{path.name}.{os.getpid()}.tmp')
  try:
    with open(tmp, 'wb') as f:
      np.savez(f, **arrays)
    os.replace(tmp, path)
  finally:
    if tmp.exists():
      tmp.unlink()


def _check_events(events: Any) -> None:
  if not isinstance(events, shards.Events):
    raise ValueError(
      f'expected a shards.Events, found {type(events).__name__}; read events '
      'with shards.read_data_dir or shards.read_shard'
    )
  version = events.attrs.get('schema_version', shards.SCHEMA_VERSION)
  if version != shards.SCHEMA_VERSION:
    raise ValueError(
      f'the events have schema version {version}, the tagger reads version '
      f'{shards.SCHEMA_VERSION}; regenerate the events'
    )
  missing = sorted(set(features_lib.TRACK_INPUT_COLUMNS) - set(events.tracks))
  if missing:
    raise ValueError(
      f'the events lack the track columns {missing} that the tagger reads; '
      'they do not follow the shards.TRACK_COLUMNS schema'
    )


def load_predictor(
  workdir: str | os.PathLike,
) -> Callable[[shards.Events], np.ndarray]:
  """Rebuilds a trained deep tagger from its workdir.

  Args:
    workdir: A workdir written by `train_and_evaluate`.

  Returns:
    predict(events: shards.Events) -> qr, shape [events] float64 in [-1, 1].

  Raises:
    ValueError: The workdir holds no deep tagger, or its features differ
      from features.FEATURE_NAMES (normalizer.NormalizerError), or the
      events do not follow the schema the tagger reads.
  """
  workdir = pathlib.Path(workdir)
  path = workdir / 'tagger.json'
  if not path.is_file():
    raise ValueError(
      f'{path}: no such file; train a tagger into {workdir} with '
      '`python -m experiments.train --workdir=...`'
    )
  tagger = json.loads(path.read_text())
  if tagger.get('kind') != 'dnn':
    raise ValueError(
      f'{path}: kind is {tagger.get("kind")!r}, expected "dnn"; load it '
      'with taggers.load'
    )
  if tagger.get('schema_version') != TAGGER_SCHEMA_VERSION:
    raise ValueError(
      f'{path}: tagger schema version {tagger.get("schema_version")}, this '
      f'code reads version {TAGGER_SCHEMA_VERSION}; retrain the tagger'
    )
  if tuple(tagger['feature_names']) != features_lib.FEATURE_NAMES:
    raise ValueError(
      f'{path}: the tagger was trained on other features than '
      'features.FEATURE_NAMES; retrain it with this code'
    )
  normalizer = normalizer_lib.QuantileNormalizer.load(
    workdir / tagger['normalizer'], feature_names=features_lib.FEATURE_NAMES
  )
  model = models.MLP(models.MLPConfig(**tagger['model']))
  template = model.init(
    jax.random.key(0), jnp.zeros((1, features_lib.NUM_FEATURES), jnp.float32)
  )['params']
  params = flax.serialization.from_bytes(
    template, (workdir / tagger['params']).read_bytes()
  )
  logits_fn = make_logits_fn(model, 16384)
  momentum_frame = tagger['momentum_frame']

  def predict(events: shards.Events) -> np.ndarray:
    _check_events(events)
    dataset = pipeline.prepare_events(events, normalizer, momentum_frame)
    return qr_from_logits(logits_fn(params, dataset.features))

  return predict
