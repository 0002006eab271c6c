"""DataModules: one base (split, normalization, transforms, loaders) and one small module per dataset."""

from betavae.data.base import ImageDataModule, IndexedSubset, TensorImageDataset, split_indices
from betavae.data.batik import BatikDataModule, random_patches
from betavae.data.cache import BadImagesError, CachedImageDataset, DecodedCache
from betavae.data.cache_keys import default_cache_dir
from betavae.data.cars import StanfordCarsDataModule
from betavae.data.celeba import CelebADataModule
from betavae.data.dsprites import DSpritesDataModule
from betavae.data.folder import ImageFolderDataModule, decode_image, find_images, load_image
from betavae.data.grid import FactorGrid, FactorGridDataModule, FactorGridDataset
from betavae.data.ground_truth import GroundTruthData, ground_truth_kind, observed_factors
from betavae.data.mnist import FashionMNISTDataModule, MNISTDataModule, read_idx
from betavae.data.shapes import ShapesDataModule, ShapesDataset, render_shapes, sample_factor_indices, sample_factors
from betavae.data.shapes3d import Shapes3DDataModule
from betavae.data.textures import TexturesDataModule

__all__ = [
    "BadImagesError",
    "BatikDataModule",
    "CachedImageDataset",
    "CelebADataModule",
    "DSpritesDataModule",
    "DecodedCache",
    "FactorGrid",
    "FactorGridDataModule",
    "FactorGridDataset",
    "FashionMNISTDataModule",
    "GroundTruthData",
    "ImageDataModule",
    "ImageFolderDataModule",
    "MNISTDataModule",
    "ShapesDataModule",
    "ShapesDataset",
    "Shapes3DDataModule",
    "StanfordCarsDataModule",
    "TexturesDataModule",
    "TensorImageDataset",
    "IndexedSubset",
    "decode_image",
    "default_cache_dir",
    "find_images",
    "ground_truth_kind",
    "load_image",
    "observed_factors",
    "random_patches",
    "read_idx",
    "render_shapes",
    "sample_factor_indices",
    "sample_factors",
    "split_indices",
]
