"""DataModules: one base (split, normalization, transforms, loaders) and one small module per dataset."""

from betavae.data.base import ImageDataModule, TransformedSubset, split_indices
from betavae.data.folder import ImageFolderDataModule, find_images, load_image
from betavae.data.shapes import ShapesDataModule, ShapesDataset, render_shapes, sample_factors

__all__ = [
    "ImageDataModule",
    "ImageFolderDataModule",
    "ShapesDataModule",
    "ShapesDataset",
    "TransformedSubset",
    "find_images",
    "load_image",
    "render_shapes",
    "sample_factors",
    "split_indices",
]
