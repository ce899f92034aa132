"""Deep-learning flavor tagging of B mesons at Belle II, in JAX."""

__version__ = '0.1.0'
