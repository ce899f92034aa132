"""The optimizer: momentum SGD with L2 weight decay and per-epoch schedules.

The reference recipe (DESIGN) minimizes E + alpha/2 sum W^2 over the kernels
W (biases are not penalized) by SGD with classical momentum,

    v <- mu v + eta (dE/dW + alpha W),    W <- W - v,

with the learning rate eta = max(0.05 * 0.97629^epoch, 1e-6) and the momentum
mu rising linearly from 0.9 to 0.99 over the first 200 epochs. The penalty is
a step of the Optax chain, not a term of the loss, so the loss that is logged
is the plain cross-entropy E. With `decoupled_weight_decay` the decay moves
behind the momentum, as in SGDW (Loshchilov and Hutter, arXiv:1711.05101):

    v <- mu v + eta dE/dW,    W <- W - v - eta alpha W.

The velocity v is kept in parameter units (the learning rate is applied
before the momentum), as in the Pylearn2 trainer of Baldi, Sadowski and
Whiteson that the recipe follows; a change of eta between epochs therefore
does not rescale the velocity already accumulated.

The learning rate and momentum live in the optimizer state
(optax.inject_hyperparams) and are set at the start of every epoch with
`at_epoch`, so they are visible for logging and can differ between models
that are trained together under jax.vmap.
"""

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import optax


@dataclasses.dataclass(frozen=True)
class OptimizerConfig:
  """Numbers of the optimizer and its schedules.

  Attributes:
    learning_rate: Learning rate eta of epoch 0.
    learning_rate_decay: Factor applied to eta after every epoch.
    learning_rate_floor: Lower bound of eta.
    momentum_start: Momentum mu of epoch 0.
    momentum_end: Momentum reached at epoch momentum_ramp_epochs and kept.
    momentum_ramp_epochs: Length of the linear momentum ramp, in epochs.
    weight_decay: L2 coefficient alpha of the penalty alpha/2 sum W^2.
    decoupled_weight_decay: Applies the decay after the momentum (SGDW)
      instead of adding alpha W to the gradient.
  """

  learning_rate: float = 0.05
  learning_rate_decay: float = 0.97629
  learning_rate_floor: float = 1e-6
  momentum_start: float = 0.9
  momentum_end: float = 0.99
  momentum_ramp_epochs: int = 200
  weight_decay: float = 2e-5
  decoupled_weight_decay: bool = False

  def __post_init__(self):
    if not self.learning_rate > 0.0:
      raise ValueError(
        f'learning_rate must be positive, found {self.learning_rate}.'
      )
    if not 0.0 < self.learning_rate_decay <= 1.0:
      raise ValueError(
        'learning_rate_decay must lie in (0, 1], found '
        f'{self.learning_rate_decay}.'
      )
    if self.learning_rate_floor < 0.0:
      raise ValueError(
        'learning_rate_floor must not be negative, found '
        f'{self.learning_rate_floor}.'
      )
    for name in ('momentum_start', 'momentum_end'):
      value = getattr(self, name)
      if not 0.0 <= value < 1.0:
        raise ValueError(f'{name} must lie in [0, 1), found {value}.')
    if self.momentum_ramp_epochs < 0:
      raise ValueError(
        'momentum_ramp_epochs must not be negative, found '
        f'{self.momentum_ramp_epochs}.'
      )
    if self.weight_decay < 0.0:
      raise ValueError(
        f'weight_decay must not be negative, found {self.weight_decay}.'
      )

  @classmethod
  def from_config(cls, config: Any) -> 'OptimizerConfig':
    """Takes the optimizer fields from a run config (ConfigDict)."""
    return cls(**{f.name: config[f.name] for f in dataclasses.fields(cls)})

  def learning_rate_at(self, epoch: int | jax.Array) -> jax.Array:
    """Learning rate eta of epoch `epoch` (counted from 0), a scalar."""
    decayed = self.learning_rate * jnp.power(
      jnp.float32(self.learning_rate_decay), epoch
    )
    return jnp.maximum(decayed, self.learning_rate_floor).astype(jnp.float32)

  def momentum_at(self, epoch: int | jax.Array) -> jax.Array:
    """Momentum mu of epoch `epoch` (counted from 0), a scalar."""
    if self.momentum_ramp_epochs == 0:
      return jnp.float32(self.momentum_end)
    progress = jnp.clip(
      jnp.asarray(epoch, jnp.float32) / self.momentum_ramp_epochs, 0.0, 1.0
    )
    start, end = self.momentum_start, self.momentum_end
    return (start + (end - start) * progress).astype(jnp.float32)


def kernel_mask(params: Any) -> Any:
  """True for every Dense kernel, False for biases and anything else."""
  return jax.tree_util.tree_map_with_path(
    lambda path, _: getattr(path[-1], 'key', None) == 'kernel', params
  )


def _momentum_sgd(
  learning_rate: jax.Array,
  momentum: jax.Array,
  weight_decay: jax.Array,
  decoupled: bool,
) -> optax.GradientTransformation:
  """The chain for one set of hyperparameter values (see module docstring)."""
  if decoupled:
    steps = [
      optax.scale(learning_rate),
      optax.trace(decay=momentum),
      optax.add_decayed_weights(learning_rate * weight_decay, kernel_mask),
    ]
  else:
    steps = [
      optax.add_decayed_weights(weight_decay, kernel_mask),
      optax.scale(learning_rate),
      optax.trace(decay=momentum),
    ]
  # Everything above is in the gradient's direction; the update descends.
  return optax.chain(*steps, optax.scale(-1.0))


def make_optimizer(config: Any) -> optax.GradientTransformation:
  """Builds the optimizer of the reference recipe.

  Args:
    config: An OptimizerConfig, or a run config holding its fields.

  Returns:
    An Optax transformation whose state carries `hyperparams` with the
    entries learning_rate, momentum and weight_decay; they start at the
    values of epoch 0 and are moved along the schedules by `at_epoch`.
  """
  if not isinstance(config, OptimizerConfig):
    config = OptimizerConfig.from_config(config)
  factory = optax.inject_hyperparams(_momentum_sgd, static_args='decoupled')
  return factory(
    learning_rate=float(config.learning_rate_at(0)),
    momentum=float(config.momentum_at(0)),
    weight_decay=config.weight_decay,
    decoupled=config.decoupled_weight_decay,
  )


def at_epoch(opt_state: Any, config: Any, epoch: int | jax.Array) -> Any:
  """Sets the learning rate and momentum of `epoch` in the optimizer state.

  Args:
    opt_state: State of a `make_optimizer` transformation.
    config: An OptimizerConfig, or a run config holding its fields.
    epoch: The epoch about to be trained, counted from 0.

  Returns:
    The same state with hyperparams['learning_rate'] and
    hyperparams['momentum'] replaced by the schedules' values.
  """
  if not isinstance(config, OptimizerConfig):
    config = OptimizerConfig.from_config(config)
  # Every entry as a strongly typed float32 scalar, so that the state has
  # the same types in every epoch and a compiled epoch is reused.
  hyperparams = {
    k: jnp.asarray(v, jnp.float32) for k, v in opt_state.hyperparams.items()
  }
  hyperparams['learning_rate'] = config.learning_rate_at(epoch)
  hyperparams['momentum'] = config.momentum_at(epoch)
  return opt_state._replace(hyperparams=hyperparams)


def hyperparams(opt_state: Any) -> dict[str, float]:
  """The current learning rate, momentum and weight decay, as floats."""
  return {k: float(v) for k, v in opt_state.hyperparams.items()}
