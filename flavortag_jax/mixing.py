"""Decay times and flavors of the coherent C = -1 B0 anti-B0 pair.

An Upsilon(4S) decays into a B0 anti-B0 pair in a P wave (C = -1): the two
mesons oscillate in phase until one of them decays. The joint decay rate is
exp(-(t_sig + t_tag) / tau) times a factor that depends only on
dt = t_sig - t_tag. Both proper times are therefore drawn independently from
Exp(tau_B0), and the flavors are then chosen from dt:

* flavor-specific signal: P(opposite flavors at decay) = (1 + cos(dm dt)) / 2;
* CP eigenstate signal (B0 -> J/psi K_S):
  P(q_tag) = (1 + q_tag (S sin(dm dt) - C cos(dm dt))) / 2;
* invisible signal (B0 -> nu nu-bar): the same with S = C = 0, so the tag
  flavor is +1 or -1 with probability 1/2, independent of dt.

Flavor q = +1 for B0 (b-bar quark), -1 for anti-B0. Times in ps.
"""

import dataclasses

import numpy as np

from flavortag_jax import physics


@dataclasses.dataclass(frozen=True)
class PairDecays:
  """Proper decay times and flavors at decay of a batch of B pairs.

  Attributes:
    t_sig: Signal B proper decay time, ps, shape [events].
    t_tag: Tag B proper decay time, ps, shape [events].
    q_sig: Signal B flavor at its decay, +1 / -1, or 0 where the signal final
      state does not define it (CP eigenstate, invisible), shape [events] int8.
    q_tag: Tag B flavor at its decay, +1 / -1, shape [events] int8.
  """

  t_sig: np.ndarray
  t_tag: np.ndarray
  q_sig: np.ndarray
  q_tag: np.ndarray

  @property
  def dt(self) -> np.ndarray:
    """t_sig - t_tag, ps, shape [events]."""
    return self.t_sig - self.t_tag


def opposite_flavor_probability(dt, dm=physics.PHYSICS.dm_d):
  """Probability that the two Bs decay with opposite flavors.

  Args:
    dt: t_sig - t_tag, ps, any shape.
    dm: Mixing frequency, ps^-1.

  Returns:
    (1 + cos(dm dt)) / 2, same shape as dt.
  """
  return 0.5 * (1.0 + np.cos(dm * np.asarray(dt)))


def cp_tag_b0_probability(
  dt,
  s=physics.PHYSICS.sin2beta,
  c=physics.PHYSICS.c_cp,
  dm=physics.PHYSICS.dm_d,
):
  """Probability that the tag B is a B0 (q_tag = +1) opposite a CP eigenstate.

  Args:
    dt: t_sig - t_tag, ps, any shape.
    s: Mixing-induced CP parameter S.
    c: Direct CP parameter C.
    dm: Mixing frequency, ps^-1.

  Returns:
    (1 + S sin(dm dt) - C cos(dm dt)) / 2, same shape as dt.
  """
  phase = dm * np.asarray(dt)
  return 0.5 * (1.0 + s * np.sin(phase) - c * np.cos(phase))


def draw_decay_times(rng, num_events, tau=physics.PHYSICS.tau_b0):
  """Draws independent proper decay times of both Bs.

  Args:
    rng: np.random.Generator.
    num_events: Number of B pairs.
    tau: B0 lifetime, ps.

  Returns:
    (t_sig, t_tag), each shape [num_events], ps.
  """
  t = rng.exponential(tau, size=(2, num_events))
  return t[0], t[1]


def _sign(accept):
  return np.where(accept, 1, -1).astype(np.int8)


def draw_pair_decays(
  rng,
  num_events,
  signal,
  constants=physics.PHYSICS,
):
  """Draws decay times and flavors of B pairs for one kind of signal decay.

  Args:
    rng: np.random.Generator.
    num_events: Number of B pairs.
    signal: 'flavor_specific', 'cp' (CP eigenstate with the constants' S and
      C) or 'invisible' (S = C = 0).
    constants: physics.PhysicsConstants with tau_b0, dm_d, sin2beta, c_cp.

  Returns:
    PairDecays with arrays of shape [num_events].

  Raises:
    ValueError: Unknown signal kind or a negative number of events.
  """
  if num_events < 0:
    raise ValueError(f'num_events must be >= 0, got {num_events}')
  t_sig, t_tag = draw_decay_times(rng, num_events, constants.tau_b0)
  dt = t_sig - t_tag
  u = rng.uniform(size=(2, num_events))
  if signal == 'flavor_specific':
    q_sig = _sign(u[0] < 0.5)
    opposite = u[1] < opposite_flavor_probability(dt, constants.dm_d)
    q_tag = np.where(opposite, -q_sig, q_sig).astype(np.int8)
  elif signal in ('cp', 'invisible'):
    if signal == 'cp':
      s, c = constants.sin2beta, constants.c_cp
    else:
      s, c = 0.0, 0.0
    q_sig = np.zeros(num_events, np.int8)
    q_tag = _sign(u[1] < cp_tag_b0_probability(dt, s, c, constants.dm_d))
  else:
    raise ValueError(
      f"unknown signal kind {signal!r}; expected 'flavor_specific', 'cp' or "
      "'invisible'"
    )
  return PairDecays(t_sig, t_tag, q_sig, q_tag)
