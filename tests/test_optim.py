"""Tests of the optimizer chain and its per-epoch schedules."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from flavortag_jax import optim

# Tiny problem: one Dense layer with kernel W = [[1], [-2]] and bias b = 0.5,
# and a linear loss E = 0.2 w1 + 0.4 w2 + 0.1 b, so dE/dW = [0.2, 0.4] and
# dE/db = 0.1 at every point. eta = 0.1, mu = 0.9, alpha = 0.5.
PARAMS = {
  'dense': {
    'kernel': jnp.array([[1.0], [-2.0]]),
    'bias': jnp.array([0.5]),
  }
}


def linear_loss(params):
  kernel, bias = params['dense']['kernel'], params['dense']['bias']
  return 0.2 * kernel[0, 0] + 0.4 * kernel[1, 0] + 0.1 * bias[0]


def two_steps(decoupled):
  config = optim.OptimizerConfig(
    learning_rate=0.1,
    momentum_start=0.9,
    momentum_end=0.9,
    weight_decay=0.5,
    decoupled_weight_decay=decoupled,
  )
  tx = optim.make_optimizer(config)
  state = optim.at_epoch(tx.init(PARAMS), config, 0)
  params = PARAMS
  trajectory = []
  for _ in range(2):
    grads = jax.grad(linear_loss)(params)
    updates, state = tx.update(grads, state, params)
    params = optax.apply_updates(params, updates)
    trajectory.append(params)
  return trajectory


def test_coupled_decay_is_momentum_sgd_on_the_penalized_loss():
  first, second = two_steps(decoupled=False)
  # Penalized loss L = E + alpha/2 (w1^2 + w2^2): dL/dW = dE/dW + alpha W.
  # Step 1: dL/dW = [0.2 + 0.5 * 1, 0.4 + 0.5 * (-2)] = [0.7, -0.6];
  #   v = eta dL/dW = [0.07, -0.06]; W = [1 - 0.07, -2 + 0.06] = [0.93, -1.94].
  #   Bias (no penalty): v = 0.1 * 0.1 = 0.01, b = 0.49.
  np.testing.assert_allclose(
    first['dense']['kernel'][:, 0], [0.93, -1.94], rtol=1e-6
  )
  np.testing.assert_allclose(first['dense']['bias'], [0.49], rtol=1e-6)
  # Step 2: dL/dW = [0.2 + 0.5 * 0.93, 0.4 + 0.5 * (-1.94)] = [0.665, -0.57];
  #   v = 0.9 [0.07, -0.06] + 0.1 [0.665, -0.57] = [0.1295, -0.111];
  #   W = [0.93 - 0.1295, -1.94 + 0.111] = [0.8005, -1.829].
  #   Bias: v = 0.9 * 0.01 + 0.1 * 0.1 = 0.019, b = 0.49 - 0.019 = 0.471.
  np.testing.assert_allclose(
    second['dense']['kernel'][:, 0], [0.8005, -1.829], rtol=1e-6
  )
  np.testing.assert_allclose(second['dense']['bias'], [0.471], rtol=1e-6)


def test_decoupled_decay_keeps_the_penalty_out_of_the_velocity():
  coupled = two_steps(decoupled=False)
  first, second = two_steps(decoupled=True)
  # Step 1 has no velocity yet, so both forms take the same step.
  np.testing.assert_allclose(
    first['dense']['kernel'], coupled[0]['dense']['kernel'], rtol=1e-6
  )
  # Step 2: v = 0.9 * 0.1 * [0.2, 0.4] + 0.1 * [0.2, 0.4] = [0.038, 0.076];
  #   W = W1 - v - eta alpha W1 = [0.93 - 0.038 - 0.05 * 0.93,
  #   -1.94 - 0.076 + 0.05 * 1.94] = [0.8455, -1.919].
  np.testing.assert_allclose(
    second['dense']['kernel'][:, 0], [0.8455, -1.919], rtol=1e-6
  )
  # The coupled velocity also carries mu eta alpha W0 from step 1:
  # W2(coupled) - W2(decoupled) = -0.9 * 0.1 * 0.5 * [1, -2] = [-0.045, 0.09].
  np.testing.assert_allclose(
    coupled[1]['dense']['kernel'][:, 0] - second['dense']['kernel'][:, 0],
    [-0.045, 0.09],
    atol=1e-6,
  )
  # Biases are never decayed: the same in both forms.
  np.testing.assert_allclose(
    second['dense']['bias'], coupled[1]['dense']['bias'], rtol=1e-6
  )


def test_learning_rate_schedule():
  config = optim.OptimizerConfig()
  # 0.05 * 0.97629 = 0.0488145; 0.05 * 0.97629^10 = 0.039333.
  np.testing.assert_allclose(config.learning_rate_at(0), 0.05, rtol=1e-6)
  np.testing.assert_allclose(config.learning_rate_at(1), 0.0488145, rtol=1e-5)
  np.testing.assert_allclose(config.learning_rate_at(10), 0.039333, rtol=1e-4)
  # The floor is reached at ln(1e-6 / 0.05) / ln(0.97629) = 450.9 epochs:
  # 0.05 * 0.97629^450 = 1.022e-6, then 1e-6.
  np.testing.assert_allclose(config.learning_rate_at(450), 1.022e-6, rtol=1e-3)
  np.testing.assert_allclose(config.learning_rate_at(451), 1e-6, rtol=1e-6)
  np.testing.assert_allclose(config.learning_rate_at(2000), 1e-6, rtol=1e-6)


def test_momentum_schedule():
  config = optim.OptimizerConfig()
  # Linear from 0.9 to 0.99 over 200 epochs: epoch 100 -> 0.945.
  for epoch, expected in ((0, 0.9), (100, 0.945), (200, 0.99), (350, 0.99)):
    np.testing.assert_allclose(config.momentum_at(epoch), expected, rtol=1e-6)


def test_at_epoch_sets_the_visible_hyperparameters():
  config = optim.OptimizerConfig()
  tx = optim.make_optimizer(config)
  state = optim.at_epoch(tx.init(PARAMS), config, 100)
  values = optim.hyperparams(state)
  assert values['momentum'] == pytest.approx(0.945, rel=1e-6)
  assert values['learning_rate'] == pytest.approx(0.05 * 0.97629**100, 1e-5)
  assert values['weight_decay'] == pytest.approx(2e-5, rel=1e-6)


def test_kernel_mask_selects_kernels_only():
  mask = optim.kernel_mask(PARAMS)
  assert mask == {'dense': {'kernel': True, 'bias': False}}


@pytest.mark.parametrize(
  'field, value',
  [
    ('learning_rate', 0.0),
    ('learning_rate_decay', 1.5),
    ('momentum_end', 1.0),
    ('weight_decay', -1e-5),
  ],
)
def test_bad_values_are_rejected(field, value):
  with pytest.raises(ValueError, match=field):
    optim.OptimizerConfig(**{field: value})
