"""DataModules: one base (split, normalization, transforms, loaders) and one small module per dataset."""

from betavae.data.base import ImageDataModule, TensorImageDataset, TransformedSubset, split_indices
from betavae.data.batik import BatikDataModule, random_patches
from betavae.data.cache import BadImagesError, CachedImageDataset, DecodedCache, default_cache_dir
from betavae.data.cars import StanfordCarsDataModule
from betavae.data.celeba import CelebADataModule
from betavae.data.folder import ImageFolderDataModule, decode_image, find_images, load_image
from betavae.data.mnist import FashionMNISTDataModule, MNISTDataModule, read_idx
from betavae.data.shapes import ShapesDataModule, ShapesDataset, render_shapes, sample_factors
from betavae.data.textures import TexturesDataModule

__all__ = [
    "BadImagesError",
    "BatikDataModule",
    "CachedImageDataset",
    "CelebADataModule",
    "DecodedCache",
    "FashionMNISTDataModule",
    "ImageDataModule",
    "ImageFolderDataModule",
    "MNISTDataModule",
    "ShapesDataModule",
    "ShapesDataset",
    "StanfordCarsDataModule",
    "TexturesDataModule",
    "TensorImageDataset",
    "TransformedSubset",
    "decode_image",
    "default_cache_dir",
    "find_images",
    "load_image",
    "random_patches",
    "read_idx",
    "render_shapes",
    "sample_factors",
    "split_indices",
]
