"""A linear autoencoder's validation error against PCA's: does ``ae_linear.yaml`` learn what PCA learns?

With a squared error, a linear autoencoder with a k-dimensional code is at best as good as a k-component
PCA (Baldi and Hornik 1989). This script takes a trained checkpoint and its run's ``config.yaml``, rebuilds
the run's data module (the same split and normalization), fits scikit-learn's ``PCA(k)`` on the training
split and scores both on the validation split: the mean squared error in the model's normalized space (what
the model minimizes, ``val/recon``) and in pixel space [0, 1] after clamping (``to_pixels``).

    python -m betavae fit --config ae_linear.yaml --data.init_args.root DIR --data.init_args.download false
    python scripts/linear_vs_pca.py --ckpt_path runs/ae_linear/version_0/checkpoints/last.ckpt

Prints both errors and their ratio; exit status 1 when the autoencoder is more than ``--tolerance`` (5 %)
above PCA in normalized space.
"""

from __future__ import annotations

import argparse  # a measurement script, not a betavae command: plain argparse is enough here
import sys
from pathlib import Path

import numpy as np
import torch
import yaml
from jsonargparse import ArgumentParser
from sklearn.decomposition import PCA

from betavae.data import ImageDataModule
from betavae.evaluation import run_dir_of
from betavae.models import Autoencoder


def load_data(config_path: Path) -> ImageDataModule:
    """The run's data module, built from the ``data`` section of its ``config.yaml``."""
    parser = ArgumentParser()
    parser.add_subclass_arguments(ImageDataModule, "data")
    data = yaml.safe_load(config_path.read_text())["data"]
    return parser.instantiate_classes(parser.parse_object({"data": data})).data


def split_images(data: ImageDataModule) -> tuple[torch.Tensor, torch.Tensor]:
    """The training and validation images of the data's split, (N, C, H, W), normalized with its mean and std
    from the dataset's uint8 images (an in-memory dataset such as (Fashion-)MNIST's)."""
    data.setup("fit")
    mean, std = torch.tensor(data.mean).view(1, -1, 1, 1), torch.tensor(data.std).view(1, -1, 1, 1)
    pixels = data.dataset.images.float() / 255  # (N, C, H, W) in [0, 1]
    return tuple((pixels[s.indices] - mean) / std for s in (data.train_set, data.val_set))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt_path", required=True, help="checkpoint of a linear autoencoder run")
    parser.add_argument("--config", help="the run's config.yaml (default: next to the checkpoint's run)")
    parser.add_argument("--tolerance", type=float, default=0.05, help="allowed excess over PCA (0.05: 5 %%)")
    args = parser.parse_args()

    config = Path(args.config) if args.config else run_dir_of(args.ckpt_path) / "config.yaml"
    model = Autoencoder.load_from_checkpoint(args.ckpt_path, map_location="cpu").eval()
    train_x, val_x = split_images(load_data(config))  # (N, C, H, W), normalized
    k = int(model.embed(val_x[:1]).shape[1])
    with torch.no_grad():
        ae = model.reconstruct(val_x)
    pca = PCA(n_components=k).fit(train_x.flatten(1).numpy())
    pca_rec = torch.from_numpy(pca.inverse_transform(pca.transform(val_x.flatten(1).numpy()))).view_as(val_x)

    def errors(rec: torch.Tensor) -> tuple[float, float]:
        normalized = float((rec - val_x).pow(2).mean())
        pixels = float((model.to_pixels(rec) - model.to_pixels(val_x)).pow(2).mean())
        return normalized, pixels

    (ae_norm, ae_pix), (pca_norm, pca_pix) = errors(ae), errors(pca_rec.float())
    print(f"{len(train_x)} training and {len(val_x)} validation images; code size k = {k}")
    print(f"PCA({k}) explains {100 * np.sum(pca.explained_variance_ratio_):.1f} % of the training variance")
    print("validation MSE      normalized space   pixels [0, 1]")
    print(f"  autoencoder       {ae_norm:16.4f}   {ae_pix:13.4f}")
    print(f"  PCA({k})            {pca_norm:16.4f}   {pca_pix:13.4f}")
    ratio = ae_norm / pca_norm
    print(f"  ratio             {ratio:16.3f}   {ae_pix / pca_pix:13.3f}")
    return 0 if ratio <= 1 + args.tolerance else 1


if __name__ == "__main__":
    sys.exit(main())
