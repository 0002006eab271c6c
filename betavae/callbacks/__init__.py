"""Callbacks: reconstruction metrics, FID/KID, disentanglement metrics, latent traversals, image grids, loss
curves, latent views, anomaly scores."""

from betavae.callbacks.anomaly import AnomalyScores
from betavae.callbacks.curves import LossCurves
from betavae.callbacks.disentanglement import DisentanglementMetrics
from betavae.callbacks.fid import FID
from betavae.callbacks.images import ImageGrids
from betavae.callbacks.latent import LatentViews
from betavae.callbacks.metrics import ReconstructionMetrics
from betavae.callbacks.traversal import LatentTraversal

__all__ = [
    "FID",
    "AnomalyScores",
    "DisentanglementMetrics",
    "LatentViews",
    "ImageGrids",
    "LatentTraversal",
    "LossCurves",
    "ReconstructionMetrics",
]
