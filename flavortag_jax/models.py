"""The deep flavor tagger's network: a Flax multilayer perceptron.

The reference network (DESIGN, Reference training recipe) has 8 hidden tanh
layers of 300 units and one sigmoid output unit, 9 weight layers in all. The
network returns the output *logit* l; the tagger's probability that the tag B
was a B0 is y = sigmoid(l) and its flavor output is qr = 2 y - 1. Keeping the
logit lets the loss use the numerically stable form of binary cross-entropy.
"""

from collections.abc import Callable
import dataclasses
import math

import flax.linen as nn
import jax
import jax.numpy as jnp

ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
  'tanh': jnp.tanh,
  'relu': nn.relu,
  'elu': nn.elu,
  'gelu': nn.gelu,
  'silu': nn.silu,
  'sigmoid': nn.sigmoid,
}

# Standard deviation of a unit normal truncated at +-2 sigma:
# sqrt(1 - 2 * 2 * phi(2) / (2 Phi(2) - 1)) = sqrt(1 - 0.21596 / 0.95450).
TRUNCATED_NORMAL_STD = 0.87962566103423978


def _truncated_normal_uncorrected(
  key: jax.Array, shape: tuple[int, ...], dtype=jnp.float32
) -> jax.Array:
  """Normal(0, 1/fan_in) truncated at +-2 of its sigma, not rescaled.

  This is what `tf.truncated_normal(stddev=1/sqrt(fan_in))` draws: the
  truncation removes the tails, so the actual standard deviation is
  TRUNCATED_NORMAL_STD / sqrt(fan_in), about 0.88 / sqrt(fan_in).
  """
  fan_in = shape[0]
  unit = jax.random.truncated_normal(key, -2.0, 2.0, shape, dtype)
  return unit / jnp.asarray(math.sqrt(fan_in), dtype)


# Kernel initializers by name. 'truncated_normal' is the reference: a
# normal truncated at 2 sigma and rescaled so that the drawn weights have
# standard deviation exactly 1/sqrt(fan_in).
KERNEL_INITIALIZERS: dict[str, Callable[..., jax.Array]] = {
  'truncated_normal': nn.initializers.variance_scaling(
    1.0, 'fan_in', 'truncated_normal'
  ),
  'truncated_normal_uncorrected': _truncated_normal_uncorrected,
  'lecun_normal': nn.initializers.lecun_normal(),
  'glorot_uniform': nn.initializers.glorot_uniform(),
}


@dataclasses.dataclass(frozen=True)
class MLPConfig:
  """Shape and regularization of the network.

  Attributes:
    num_hidden_layers: Number of hidden layers (reference 8).
    width: Units per hidden layer (reference 300).
    activation: Hidden-layer nonlinearity, a key of ACTIVATIONS.
    dropout_rate: Probability of dropping a hidden unit in training; 0 (the
      reference) switches dropout off.
    kernel_init: Weight initializer, a key of KERNEL_INITIALIZERS. The
      reference 'truncated_normal' draws weights whose standard deviation is
      1/sqrt(fan_in); 'truncated_normal_uncorrected' reproduces the smaller
      spread of a truncated normal whose *parameter* is 1/sqrt(fan_in).
      Biases start at zero.
  """

  num_hidden_layers: int = 8
  width: int = 300
  activation: str = 'tanh'
  dropout_rate: float = 0.0
  kernel_init: str = 'truncated_normal'

  def __post_init__(self):
    if self.num_hidden_layers < 1:
      raise ValueError(
        f'num_hidden_layers must be at least 1, found {self.num_hidden_layers}.'
      )
    if self.width < 1:
      raise ValueError(f'width must be at least 1, found {self.width}.')
    if self.activation not in ACTIVATIONS:
      raise ValueError(
        f'Unknown activation {self.activation!r}; choose one of '
        f'{sorted(ACTIVATIONS)}.'
      )
    if not 0.0 <= self.dropout_rate < 1.0:
      raise ValueError(
        f'dropout_rate must lie in [0, 1), found {self.dropout_rate}.'
      )
    if self.kernel_init not in KERNEL_INITIALIZERS:
      raise ValueError(
        f'Unknown kernel_init {self.kernel_init!r}; choose one of '
        f'{sorted(KERNEL_INITIALIZERS)}.'
      )


class MLP(nn.Module):
  """Fully connected network from event features to the B0 logit.

  Parameters are named hidden_0 ... hidden_{n-1} and output, each with a
  `kernel` [fan_in, fan_out] and a `bias` [fan_out].
  """

  config: MLPConfig = MLPConfig()

  @nn.compact
  def __call__(
    self,
    x: jax.Array,
    *,
    train: bool = False,
    dropout_rate: float | jax.Array | None = None,
    return_activations: bool = False,
  ) -> jax.Array | tuple[jax.Array, tuple[jax.Array, ...]]:
    """Runs the network.

    Args:
      x: Normalized event features, shape [batch, features].
      train: Applies dropout when True (needs a 'dropout' RNG stream unless
        the rate is the number 0).
      dropout_rate: Probability of dropping a hidden unit in training, a
        number or a scalar array (an array may be traced, so that models
        with different rates share one compiled program); None for the
        config's rate. Ignored when train is False.
      return_activations: Also returns every hidden layer's output.

    Returns:
      The B0 logits, shape [batch]; with return_activations, a pair of the
      logits and a tuple of num_hidden_layers arrays, each shape
      [batch, width], taken after the nonlinearity and before dropout.
    """
    config = self.config
    activation = ACTIVATIONS[config.activation]
    kernel_init = KERNEL_INITIALIZERS[config.kernel_init]
    if dropout_rate is None:
      dropout_rate = config.dropout_rate
    elif isinstance(dropout_rate, (int, float)) and not 0 <= dropout_rate < 1:
      raise ValueError(
        f'dropout_rate must lie in [0, 1), found {dropout_rate}.'
      )
    # A rate given as an array always takes the dropout path; a rate of 0
    # then keeps every unit, unchanged.
    drops = train and not (
      isinstance(dropout_rate, (int, float)) and dropout_rate == 0.0
    )

    activations = []
    h = x
    for layer in range(config.num_hidden_layers):
      h = nn.Dense(
        config.width, kernel_init=kernel_init, name=f'hidden_{layer}'
      )(h)
      h = activation(h)
      activations.append(h)
      if drops:
        h = self._dropout(h, dropout_rate)
    logits = nn.Dense(1, kernel_init=kernel_init, name='output')(h)[..., 0]

    if return_activations:
      return logits, tuple(activations)
    return logits

  def _dropout(self, h: jax.Array, rate: float | jax.Array) -> jax.Array:
    """Zeroes each unit of h with probability `rate`, scales the rest by
    1 / (1 - rate) so that the expected output equals h; shape as h."""
    keep_probability = 1.0 - rate
    keep = jax.random.bernoulli(
      self.make_rng('dropout'), keep_probability, h.shape
    )
    return jnp.where(keep, h / keep_probability, 0.0)
