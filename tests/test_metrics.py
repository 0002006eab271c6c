"""PSNR and SSIM against scikit-image, and the callback's value range, reduction and logging."""

from __future__ import annotations

from typing import Any

import lightning as L
import pytest
import torch
from helpers import seeded_pairs, skimage_scores
from torchmetrics.image import StructuralSimilarityIndexMeasure

from betavae.callbacks import ReconstructionMetrics
from betavae.data import ShapesDataModule
from betavae.models import AutoencoderModule
from betavae.scoring.reconstruction import SSIM, reconstruction_metrics


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("size,seed", [(32, 0), (64, 1), (17, 2)])
def test_psnr_and_ssim_equal_scikit_image(channels, size, seed):
    recon, target = seeded_pairs(channels, size, seed)
    metrics = reconstruction_metrics()
    half = len(recon) // 2  # two updates: the reduction over batches is the mean over images
    metrics.update(recon[:half], target[:half])
    metrics.update(recon[half:], target[half:])
    ours = metrics.compute()
    psnr, ssim = skimage_scores(recon, target)
    assert float(ours["psnr"]) == pytest.approx(psnr, abs=1e-3)
    assert float(ours["ssim"]) == pytest.approx(ssim, abs=1e-3)


def test_torchmetrics_own_ssim_differs_on_images_with_a_flat_border():
    """Why ``SSIM`` crops: torchmetrics >= 1.5 averages the reflect-padded border, where flat black
    backgrounds (the shapes data) score ~1 whatever the reconstruction does."""
    g = torch.Generator().manual_seed(3)
    target = torch.zeros(4, 1, 64, 64)
    target[:, :, 16:48, 16:48] = torch.rand(4, 1, 32, 32, generator=g)
    recon = (target + 0.1 * torch.randn(target.shape, generator=g)).clamp(0, 1)
    ours = SSIM()
    ours.update(recon, target)
    theirs = StructuralSimilarityIndexMeasure(data_range=1.0, gaussian_kernel=True, sigma=1.5)
    theirs.update(recon, target)
    reference = skimage_scores(recon, target)[1]
    assert float(ours.compute()) == pytest.approx(reference, abs=1e-4)
    assert abs(float(theirs.compute()) - reference) > 1e-3


def test_ssim_rejects_bad_inputs():
    with pytest.raises(ValueError, match="larger than 11 px"):
        SSIM().update(torch.rand(2, 1, 10, 10), torch.rand(2, 1, 10, 10))
    with pytest.raises(ValueError, match="one shape"):
        SSIM().update(torch.rand(2, 1, 16, 16), torch.rand(2, 1, 16, 15))


class DimmingAutoencoder(AutoencoderModule):
    """'Reconstructs' every image as ``factor`` times its pixels: scores known in pixel space.

    The normalization is deliberately far from [0, 1] (mean 0.3, std 0.1), so metrics computed on
    normalized tensors instead of ``to_pixels`` images would come out very different.
    """

    def __init__(self, factor: float = 0.8, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.factor = factor
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        return self.normalize(self.to_pixels(x) * self.factor) + 0 * self.dummy

    def loss_parts(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        loss = (self.reconstruct(batch["image"]) - batch["image"]).pow(2).mean()
        return {"loss": loss, "recon": loss}


def test_callback_logs_scores_of_to_pixels_images_over_the_whole_validation_split(tmp_path):
    data = ShapesDataModule(num_images=40, image_size=32, batch_size=4, mean=[0.3], std=[0.1])
    model = DimmingAutoencoder(in_channels=1, image_size=32, mean=[0.3], std=[0.1])
    trainer = L.Trainer(
        callbacks=[ReconstructionMetrics()],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    logged = trainer.validate(model, data, verbose=False)[0]
    pixels = torch.stack([item["image"] for item in data.val_set]).float() / 255  # (10, 1, H, W) uint8 → [0, 1]
    psnr, ssim = skimage_scores(pixels * 0.8, pixels)
    assert len(pixels) == 10
    assert logged["val/psnr"] == pytest.approx(psnr, abs=1e-3)
    assert logged["val/ssim"] == pytest.approx(ssim, abs=1e-3)


def test_callback_skips_models_without_reconstruct_with_one_warning(tmp_path):
    class NoReconstruct(AutoencoderModule):
        reconstruct = None  # type: ignore[assignment]

        def __init__(self) -> None:
            super().__init__(in_channels=1, image_size=16)
            self.dummy = torch.nn.Parameter(torch.zeros(1))

        def loss_parts(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
            return {"loss": self.dummy.sum() + batch["image"].mean() * 0}

    trainer = L.Trainer(
        callbacks=[ReconstructionMetrics()],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    with pytest.warns(UserWarning, match="NoReconstruct has no method reconstruct") as record:
        logged = trainer.validate(NoReconstruct(), ShapesDataModule(num_images=8, image_size=16), verbose=False)[0]
    assert len([w for w in record if "ReconstructionMetrics" in str(w.message)]) == 1
    assert "val/psnr" not in logged and "val/loss" in logged


class IdentityDenoiser(DimmingAutoencoder):
    """Masks half the pixels and 'reconstructs' by returning its input: its score is the corruption's."""

    corrupts_input = True

    def corrupt(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        keep = torch.rand(x.shape, generator=generator, device=x.device) < 0.5
        return self.normalize(self.to_pixels(x) * keep)


def test_denoisers_are_scored_on_reconstructing_the_corrupted_input(tmp_path):
    data = ShapesDataModule(num_images=40, image_size=32, batch_size=4, mean=[0.3], std=[0.1])
    model = IdentityDenoiser(factor=1.0, in_channels=1, image_size=32, mean=[0.3], std=[0.1])
    trainer = L.Trainer(
        callbacks=[ReconstructionMetrics()],
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    logged = trainer.validate(model, data, verbose=False)[0]
    clean, corrupted = [], []
    for item in data.val_set:  # each image's corruption is seeded by its dataset index
        x = data.prepare_batch({"image": item["image"].unsqueeze(0)})["image"]  # (1, C, H, W), normalized
        clean.append(model.to_pixels(x))
        corrupted.append(model.to_pixels(model.corrupt(x, torch.Generator().manual_seed(int(item["index"])))))
    psnr, ssim = skimage_scores(torch.cat(corrupted), torch.cat(clean))
    assert psnr < 20  # half the pixels masked (shapes are mostly black background): far from perfect
    assert logged["val/psnr"] == pytest.approx(psnr, abs=1e-3)
    assert logged["val/ssim"] == pytest.approx(ssim, abs=1e-3)
    assert logged["val/psnr_input"] == pytest.approx(psnr, abs=1e-3)  # the baseline: the input itself


def test_models_without_corruption_log_no_input_scores(tmp_path):
    data = ShapesDataModule(num_images=16, image_size=32, batch_size=4)
    trainer = L.Trainer(callbacks=[ReconstructionMetrics()], logger=False, enable_progress_bar=False)
    logged = trainer.validate(DimmingAutoencoder(in_channels=1, image_size=32), data, verbose=False)[0]
    assert "val/psnr" in logged and "val/psnr_input" not in logged
