"""FID and KID (torchmetrics) of decoded prior samples against a reference set, from one feature pass."""

from __future__ import annotations

import warnings

import torch
from torch import nn
from torchmetrics.image import FrechetInceptionDistance, KernelInceptionDistance

from betavae.errors import ConfigError
from betavae.fid.features import Precomputed
from betavae.model_api import evaluating


class GenerativeScores(nn.Module):
    """FID and KID (torchmetrics) of generated images against a reference set, from one feature pass.

    ``update(images, real=True)`` adds reference images, ``update(images, real=False)`` generated ones
    (both in [0, 1], (B, C, H, W)); ``reset()`` forgets the generated ones only, so the reference
    features are computed once and reused. States are summed (FID) or gathered (KID) across processes.

    KID's feature lists are gathered element by element (torchmetrics' ``KernelInceptionDistance`` keeps
    them unreduced), so processes that added different numbers of batches would wait on each other for
    ever; this class therefore keeps KID's features itself and hands KID one tensor per set and process
    just before computing.

    Args:
        extractor: Maps [0, 1] images (B, C, H, W) to features (B, d); needs a ``num_features``
            attribute (d). ``InceptionFeatures`` for the standard FID.
        kid_subset_size: Images per KID subset (capped at the number of images of each set).
        kid_subsets: Number of KID subsets.
    """

    def __init__(self, extractor: nn.Module, kid_subset_size: int = 1000, kid_subsets: int = 100) -> None:
        super().__init__()
        num_features = getattr(extractor, "num_features", None)
        if not isinstance(num_features, int) or num_features < 1:
            raise ConfigError(f"the feature extractor needs an int attribute num_features, got {num_features!r}")
        self.extractor = extractor
        self.kid_subset_size = kid_subset_size
        self.fid = FrechetInceptionDistance(feature=Precomputed(num_features), reset_real_features=False)
        with warnings.catch_warnings():  # "KID will save all extracted features in buffer": yes, by design
            warnings.simplefilter("ignore", UserWarning)
            self.kid = KernelInceptionDistance(
                feature=Precomputed(num_features),
                subsets=kid_subsets,
                subset_size=kid_subset_size,
                reset_real_features=True,  # refilled from the buffers below at every compute
            )
        self.kid_features: dict[bool, list[torch.Tensor]] = {True: [], False: []}  # real / generated, (B, d)

    @torch.no_grad()
    def update(self, images: torch.Tensor, real: bool) -> None:
        self.update_features(self.extractor(images), real)

    def update_features(self, features: torch.Tensor, real: bool) -> None:
        """Add precomputed features (B, d) of reference (``real``) or generated images."""
        features = features.detach().double()  # FID's covariance sums are float64 anyway
        self.fid.update(features, real=real)
        self.kid_features[real].append(features)

    @property
    def num_real(self) -> int:
        """Reference images of this process."""
        return int(self.fid.real_features_num_samples)

    @property
    def num_fake(self) -> int:
        """Generated images of this process."""
        return int(self.fid.fake_features_num_samples)

    def compute(self, seed: int = 0) -> dict[str, float]:
        """``fid``, ``kid``, ``kid_std`` and the image counts ``num_real``, ``num_fake`` over every process.

        KID's random subsets are drawn with ``seed`` (the global RNG is left as it was).
        """
        counts = torch.stack([self.fid.real_features_num_samples, self.fid.fake_features_num_samples]).clone()
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.all_reduce(counts)
        num_real, num_fake = (int(c) for c in counts)
        if min(num_real, num_fake) < 2:
            raise ConfigError(f"FID needs at least 2 reference and 2 generated images, got {num_real} and {num_fake}")
        fid = float(self.fid.compute())
        self.kid.subset_size = min(self.kid_subset_size, num_real, num_fake)
        self.kid.reset()
        width = self.extractor.num_features
        for real in (True, False):  # one tensor per set on every process, possibly (0, d): even gathers
            kept = self.kid_features[real]
            self.kid.update(
                torch.cat(kept)
                if kept
                else torch.zeros(0, width, dtype=torch.float64, device=self.fid.real_features_num_samples.device),
                real=real,
            )
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            kid, kid_std = (float(v) for v in self.kid.compute())
        return {"fid": fid, "kid": kid, "kid_std": kid_std, "num_real": num_real, "num_fake": num_fake}

    def reset(self) -> None:
        """Forget the generated images; keep the reference features."""
        self.fid.reset()
        self.kid.reset()
        self.kid_features[False].clear()


def reference_room(max_real_images: int | None, world_size: int, num_real: int) -> int | None:
    """How many more reference images this process may add under a cap of ``max_real_images`` spread over
    ``world_size`` processes, having added ``num_real``; ``None``: no cap."""
    if max_real_images is None:
        return None
    return max(-(-max_real_images // world_size) - num_real, 0)


def add_samples(
    model: nn.Module,
    scores: GenerativeScores,
    num_samples: int,
    batch_size: int,
    seed: int,
    rank: int = 0,
    world_size: int = 1,
) -> int:
    """Decode this process's share of ``num_samples`` prior draws and add them to ``scores`` as generated.

    The draws are cut into batches of ``batch_size``; batch ``k`` is drawn with seed ``seed + k`` and
    decoded by process ``k % world_size``. So the set of samples depends only on ``num_samples``,
    ``batch_size`` and ``seed``: the same at every call, and the same on 1 or 8 processes (FID under DDP
    equals the single-process FID). Returns the number of images this process added.
    """
    device = next(model.parameters()).device
    generator = torch.Generator(device=device)
    added = 0
    with evaluating(model):
        for k, start in enumerate(range(0, num_samples, batch_size)):
            if k % world_size != rank:
                continue
            n = min(batch_size, num_samples - start)
            scores.update(model.to_pixels(model.sample(n, generator=generator.manual_seed(seed + k))), real=False)
            added += n
    return added
