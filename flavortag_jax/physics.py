"""Physics constants of Upsilon(4S) -> B Bbar at Belle II, and the CMS boost.

Units: lengths in cm, times in ps, energies and momenta in GeV.

The boost functions use only arithmetic, so they work on numpy and on
jax.numpy arrays alike; the generator calls them with numpy, the feature
builder with JAX.
"""

import dataclasses
import math

# Speed of light in cm / ps.
C_LIGHT = 0.0299792458

# Masses of the long-lived particles the reconstruction sees, GeV, by
# absolute PDG id: the charged tracks (e, mu, pi, K, p) and the V0s (K_S,
# Lambda). Source: PDG 2024, Review of Particle Physics, Phys. Rev. D 110,
# 030001. The B0 and Upsilon(4S) masses are fields of PhysicsConstants.
MASS_BY_PDG = {
  11: 0.51099895e-3,  # e
  13: 0.1056583755,  # mu
  211: 0.13957039,  # pi+
  321: 0.493677,  # K+
  2212: 0.93827208816,  # p
  310: 0.497611,  # K_S
  3122: 1.115683,  # Lambda
}
ELECTRON_MASS = MASS_BY_PDG[11]
MUON_MASS = MASS_BY_PDG[13]
PION_MASS = MASS_BY_PDG[211]
KAON_MASS = MASS_BY_PDG[321]
PROTON_MASS = MASS_BY_PDG[2212]
K_SHORT_MASS = MASS_BY_PDG[310]
LAMBDA_MASS = MASS_BY_PDG[3122]


@dataclasses.dataclass(frozen=True)
class PhysicsConstants:
  """Beam, B meson and CP constants.

  Attributes:
    e_her: Electron beam energy, GeV (Belle II TDR, arXiv:1011.0352).
    e_ler: Positron beam energy, GeV (Belle II TDR).
    sqrt_s: CMS energy, GeV, at the Upsilon(4S) peak (TDR).
    beta_gamma: Boost of the CMS along +z (TDR: 0.287 with the 83 mrad
      crossing angle). NOTE: the small x component of the boost that the
      crossing angle brings is neglected; the CMS moves along +z.
    m_upsilon4s: Upsilon(4S) mass, GeV (PDG 2024).
    m_b0: B0 mass, GeV (PDG 2024).
    tau_b0: B0 lifetime, ps (PDG 2024: 1.517 ps).
    dm_d: B0 mixing frequency, ps^-1 (PDG 2024: 0.5069 ps^-1).
    sin2beta: CP parameter S of B0 -> J/psi K_S (PDG average about 0.70).
    c_cp: Direct CP parameter C of B0 -> J/psi K_S (consistent with 0).
  """

  e_her: float = 7.0
  e_ler: float = 4.0
  sqrt_s: float = 10.58
  beta_gamma: float = 0.287
  m_upsilon4s: float = 10.5794
  m_b0: float = 5.27966
  tau_b0: float = 1.517
  dm_d: float = 0.5069
  sin2beta: float = 0.70
  c_cp: float = 0.0

  @property
  def gamma(self) -> float:
    return math.sqrt(1.0 + self.beta_gamma**2)

  @property
  def beta(self) -> float:
    return self.beta_gamma / self.gamma

  @property
  def p_star_b(self) -> float:
    """Momentum of each B in the Upsilon(4S) frame, GeV."""
    m, mb = self.m_upsilon4s, self.m_b0
    return math.sqrt((m / 2.0) ** 2 - mb**2)

  @property
  def chi_d(self) -> float:
    """Time-integrated mixing probability x^2 / (2 (1 + x^2))."""
    x = self.dm_d * self.tau_b0
    return x**2 / (2.0 * (1.0 + x**2))


PHYSICS = PhysicsConstants()


def boost_to_lab(px, py, pz, e, beta_gamma=PHYSICS.beta_gamma):
  """Boosts four-momenta from the CMS to the lab (CMS moves along +z).

  Args:
    px, py, pz, e: CMS components, GeV, arrays of any common shape.
    beta_gamma: Boost of the CMS along +z.

  Returns:
    (px, py, pz, e) in the lab, GeV.
  """
  gamma = (1.0 + beta_gamma**2) ** 0.5
  return px, py, gamma * pz + beta_gamma * e, gamma * e + beta_gamma * pz


def boost_to_cms(px, py, pz, e, beta_gamma=PHYSICS.beta_gamma):
  """Boosts four-momenta from the lab to the CMS; inverse of boost_to_lab."""
  return boost_to_lab(px, py, pz, e, -beta_gamma)
