"""Tests of the tagger network."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from flavortag_jax import models


def init(config, num_features=140):
  model = models.MLP(config)
  params = model.init(jax.random.key(0), jnp.zeros((1, num_features)))
  return model, params['params']


def test_reference_shape_and_parameter_count():
  model, params = init(models.MLPConfig())
  assert sorted(params) == [f'hidden_{i}' for i in range(8)] + ['output']
  # 140 * 300 + 300 + 7 * (300 * 300 + 300) + 300 + 1
  # = 42300 + 632100 + 301 = 674701.
  count = sum(p.size for p in jax.tree.leaves(params))
  assert count == 674701
  logits, activations = model.apply(
    {'params': params}, jnp.ones((5, 140)), return_activations=True
  )
  assert logits.shape == (5,)
  assert len(activations) == 8
  assert all(a.shape == (5, 300) for a in activations)
  # tanh outputs lie in (-1, 1).
  assert all(float(jnp.max(jnp.abs(a))) < 1.0 for a in activations)


def test_activations_feed_the_output():
  model, params = init(models.MLPConfig(num_hidden_layers=2, width=4))
  x = jax.random.normal(jax.random.key(1), (3, 140))
  logits, (h0, h1) = model.apply({'params': params}, x, return_activations=True)
  # The same network written out: tanh(x W0 + b0), tanh(h0 W1 + b1), h1 W + b.
  p = params
  ref0 = jnp.tanh(x @ p['hidden_0']['kernel'] + p['hidden_0']['bias'])
  ref1 = jnp.tanh(ref0 @ p['hidden_1']['kernel'] + p['hidden_1']['bias'])
  ref = (ref1 @ p['output']['kernel'] + p['output']['bias'])[:, 0]
  np.testing.assert_allclose(h0, ref0, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(h1, ref1, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(logits, ref, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(
    model.apply({'params': params}, x), logits, rtol=1e-6
  )


@pytest.mark.parametrize(
  'kernel_init, expected_std',
  [
    # Rescaled truncated normal: std exactly 1/sqrt(300) = 0.057735.
    ('truncated_normal', 0.057735),
    # Unrescaled: 0.87963 / sqrt(300) = 0.050785 (a unit normal truncated at
    # +-2 has std sqrt(1 - 4 phi(2) / (2 Phi(2) - 1)) = 0.87963).
    ('truncated_normal_uncorrected', 0.050785),
  ],
)
def test_initializer_spread(kernel_init, expected_std):
  config = models.MLPConfig(kernel_init=kernel_init)
  _, params = init(config)
  kernel = np.asarray(params['hidden_3']['kernel'])  # 300 x 300 = 90000
  # Standard error of a std estimate from 90000 draws: about 0.25 %.
  assert kernel.std() == pytest.approx(expected_std, rel=0.01)
  # Truncated at 2 sigma of the underlying normal.
  bound = 2.0 / np.sqrt(300)
  if kernel_init == 'truncated_normal':
    bound /= models.TRUNCATED_NORMAL_STD
  assert np.abs(kernel).max() <= bound * (1 + 1e-6)
  assert np.all(np.asarray(params['hidden_3']['bias']) == 0.0)


def test_dropout_only_in_training():
  config = models.MLPConfig(num_hidden_layers=2, width=64, dropout_rate=0.5)
  model, params = init(config)
  x = jax.random.normal(jax.random.key(2), (8, 140))
  eval_a = model.apply({'params': params}, x)
  eval_b = model.apply({'params': params}, x)
  np.testing.assert_array_equal(eval_a, eval_b)
  train_a = model.apply(
    {'params': params}, x, train=True, rngs={'dropout': jax.random.key(3)}
  )
  assert not np.allclose(train_a, eval_a)


def test_dropout_rate_zero_in_training_equals_inference():
  config = models.MLPConfig(num_hidden_layers=3, width=32, dropout_rate=0.5)
  model, params = init(config)
  x = jax.random.normal(jax.random.key(5), (16, 140))

  # A traced rate of 0 draws masks that keep every unit, each unscaled; the
  # two compiled programs may round differently in the last bit.
  @jax.jit
  def train_logits(rate):
    return model.apply(
      {'params': params},
      x,
      train=True,
      dropout_rate=rate,
      rngs={'dropout': jax.random.key(6)},
    )

  inference = model.apply({'params': params}, x)
  np.testing.assert_allclose(
    train_logits(jnp.float32(0.0)), inference, rtol=1e-6, atol=1e-6
  )
  # The override is what matters: a traced 0.5 does drop units.
  assert np.abs(train_logits(jnp.float32(0.5)) - inference).max() > 1e-2


def test_dropout_drops_half_the_units_and_rescales_the_rest():
  width, events = 1000, 4
  model, params = init(
    models.MLPConfig(
      num_hidden_layers=1, width=width, activation='relu', dropout_rate=0.5
    )
  )
  # Every hidden unit outputs relu(0 x + 1) = 1 and the output sums them, so
  # the logit is the sum of the units after dropout: 0 for a dropped unit,
  # 1 / (1 - 0.5) = 2 for a kept one, twice the number of kept units.
  params = {
    'hidden_0': {
      'kernel': jnp.zeros((140, width)),
      'bias': jnp.ones(width),
    },
    'output': {'kernel': jnp.ones((width, 1)), 'bias': jnp.zeros(1)},
  }
  x = jax.random.normal(jax.random.key(7), (events, 140))
  np.testing.assert_array_equal(model.apply({'params': params}, x), width)
  rngs = {'dropout': jax.random.key(8)}
  logits = np.asarray(model.apply({'params': params}, x, train=True, rngs=rngs))

  kept = logits / 2.0
  np.testing.assert_array_equal(kept, np.round(kept))
  # Kept units per event: binomial(1000, 0.5), mean 500, sigma
  # sqrt(1000 * 0.5 * 0.5) = 15.8; 5 sigma = 79. Over the 4 events: mean
  # 2000, sigma sqrt(4000 * 0.25) = 31.6, 5 sigma = 158.
  assert np.all(np.abs(kept - 500) < 79)
  assert abs(kept.sum() - 2000) < 158
  # The rate given as an array draws the same masks as the config's rate.
  traced = model.apply(
    {'params': params},
    x,
    train=True,
    dropout_rate=jnp.float32(0.5),
    rngs=rngs,
  )
  np.testing.assert_array_equal(traced, logits)
  with pytest.raises(ValueError, match='dropout_rate must lie in'):
    model.apply({'params': params}, x, train=True, dropout_rate=1.0, rngs=rngs)


def test_relu_activation():
  model, params = init(
    models.MLPConfig(num_hidden_layers=1, width=16, activation='relu')
  )
  x = jax.random.normal(jax.random.key(4), (10, 140))
  _, (h,) = model.apply({'params': params}, x, return_activations=True)
  assert float(h.min()) == 0.0


@pytest.mark.parametrize(
  'field, value',
  [
    ('num_hidden_layers', 0),
    ('width', 0),
    ('activation', 'softsign'),
    ('dropout_rate', 1.0),
    ('kernel_init', 'ones'),
  ],
)
def test_bad_config_is_rejected(field, value):
  with pytest.raises(ValueError, match=field):
    models.MLPConfig(**{field: value})
