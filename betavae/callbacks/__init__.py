"""Callbacks: image grids, loss curves (metrics, traversals and guards join them here)."""

from betavae.callbacks.curves import LossCurves
from betavae.callbacks.images import ImageGrids

__all__ = ["ImageGrids", "LossCurves"]
