"""bindiff: Bernoulli (binomial) diffusion over binary 1-D vectors."""

__version__ = "0.1.0"
