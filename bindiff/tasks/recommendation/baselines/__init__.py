"""The recommenders bindiff's binomial diffusion is compared with, one file each; the registry
that makes them recipe models is ``bindiff.tasks.recommendation.models``."""

from .ease import EASE
from .gaussian import GaussianDiffusionRecommender
from .multvae import MultVAE
from .popularity import Popularity, popularity_scores
from .recfusion import RecFusionBin

__all__ = ["EASE", "GaussianDiffusionRecommender", "MultVAE", "Popularity", "RecFusionBin", "popularity_scores"]
