"""Disentanglement metrics wherever a run is scored: the callback, traversal labels, and their known answers.

``CentroidCodes`` is a model whose code is known: z0 the horizontal centroid of the image, z1 the vertical
one, z2 its mean brightness. On shapes z0 and z1 follow pos_x and pos_y; on a CelebA-layout folder whose
"Bright" attribute makes an image bright, z2 follows "Bright".
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import conv_nets, write_celeba, write_dsprites
from torch import nn

from betavae.callbacks import DisentanglementMetrics, LatentTraversal
from betavae.data import CelebADataModule, DSpritesDataModule, ShapesDataModule
from betavae.data.dsprites import DSPRITES_FILE
from betavae.disentanglement import (
    ALL_KEYS,
    SAMPLE_KEYS,
    Preset,
    evaluate_codes,
    evaluate_representation,
    model_representation,
)
from betavae.models import AutoencoderModule, DiagonalGaussian
from betavae.scoring.codes import ValidationCodes, dimension_captions, ground_truth_columns, interleave_ranks
from betavae.scoring.disentanglement import grid_scores
from betavae.scoring.traversal import row_label

TINY_PRESET = Preset(
    num_train=60,
    num_test=30,
    dci_train=40,
    dci_test=20,
    batch_size=8,
    betavae_train=20,
    betavae_eval=10,
    factorvae_train=20,
    factorvae_eval=10,
    factorvae_variance=50,
)


class CentroidCodes(AutoencoderModule):
    """μ = (horizontal centroid, vertical centroid, mean brightness) of the image in [0, 1], log σ² = 0;
    a trainable linear decoder."""

    def __init__(self, in_channels: int = 1, image_size: int = 16, **kwargs: Any) -> None:
        super().__init__(in_channels=in_channels, image_size=image_size, **kwargs)
        self.latent_dim = 3
        self.decoder = nn.Linear(3, in_channels * image_size * image_size)

    def encode(self, x: torch.Tensor, label: torch.Tensor | None = None) -> DiagonalGaussian:
        pixels = self.to_pixels(x).mean(dim=1)  # (B, H, W)
        grid = torch.linspace(0, 1, pixels.shape[-1], device=x.device)
        mass = pixels.sum(dim=(1, 2)).clamp_min(1e-6)  # (B,)
        cx = (pixels * grid[None, None, :]).sum(dim=(1, 2)) / mass
        cy = (pixels * grid[None, :, None]).sum(dim=(1, 2)) / mass
        mean = torch.stack([cx, cy, pixels.mean(dim=(1, 2))], dim=1)  # (B, 3)
        return DiagonalGaussian(mean, torch.zeros_like(mean))

    def embed(self, x: torch.Tensor, label: torch.Tensor | None = None) -> torch.Tensor:
        return self.encode(x).mean

    def decode(self, z: torch.Tensor, label: torch.Tensor | None = None) -> torch.Tensor:
        return self.decoder(z).view(-1, self.in_channels, self.image_size, self.image_size)

    def reconstruct(self, x: torch.Tensor, label: torch.Tensor | None = None) -> torch.Tensor:
        return self.decode(self.embed(x))

    def loss_parts(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        recon = F.mse_loss(self.reconstruct(batch["image"]), batch["image"])
        return {"loss": recon, "recon": recon}


def fit(tmp_path: Path, model: L.LightningModule, dm: L.LightningDataModule, callbacks: list) -> L.Trainer:
    trainer = L.Trainer(
        max_epochs=1,
        limit_train_batches=1,
        callbacks=callbacks,
        logger=L.pytorch.loggers.CSVLogger(tmp_path),
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(model, dm)
    return trainer


def logged(trainer: L.Trainer) -> dict[str, float]:
    rows = list(csv.DictReader((Path(trainer.log_dir) / "metrics.csv").open()))
    return {k[4:]: float(v) for row in rows for k, v in row.items() if k.startswith("val/") and v}


def celeba(tmp_path: Path, count: int = 96) -> CelebADataModule:
    root = write_celeba(tmp_path / "celeba", count)
    return CelebADataModule(root=str(root), image_size=16, batch_size=8)


# ---------------------------------------------------------------- the callback
def dsprites(tmp_path: Path) -> DSpritesDataModule:
    """A small dSprites file (216 random images, factors 3 × 2 × 4 × 3 × 3): few classes, quick metrics."""
    write_dsprites(tmp_path / "dsprites" / DSPRITES_FILE)
    return DSpritesDataModule(root=str(tmp_path / "dsprites"), image_size=16, batch_size=8)


def test_callback_logs_every_metric_on_factor_data_and_they_are_evaluate_representations(tmp_path):
    dm = dsprites(tmp_path)
    callback = DisentanglementMetrics(every_n_epochs=1, preset=TINY_PRESET, seed=3)
    model = CentroidCodes()
    trainer = fit(tmp_path, model, dm, [callback])
    scores = logged(trainer)
    assert set(ALL_KEYS) <= set(scores)
    expected = evaluate_representation(dm, model_representation(model), TINY_PRESET, seed=3)
    for key in ALL_KEYS:
        assert scores[key] == pytest.approx(expected[key], rel=1e-6, abs=1e-7), key
    record = json.loads((Path(trainer.log_dir) / "disentanglement.jsonl").read_text().splitlines()[-1])
    assert record["seed"] == 3 and record["preset"]["name"] == "custom" and record["preset"]["num_train"] == 60
    assert record["dci_estimator"] == "gbt"  # the protocol's estimator unless asked otherwise
    assert record["basis"] == "dsprites factor grid (3×2×4×3×3), uniform draws"


def test_callback_with_the_random_forest_logs_its_dci_and_records_the_estimator(tmp_path):
    dm = dsprites(tmp_path)
    callback = DisentanglementMetrics(1, TINY_PRESET, seed=3, interventions=False, dci_estimator="random_forest")
    model = CentroidCodes()
    trainer = fit(tmp_path, model, dm, [callback])
    scores = logged(trainer)
    expected = grid_scores(model, dm, TINY_PRESET, 3, interventions=False, dci_estimator="random_forest")["scores"]
    protocol = grid_scores(model, dm, TINY_PRESET, 3, interventions=False)["scores"]
    assert expected["dci_disentanglement"] != protocol["dci_disentanglement"]  # the estimator was passed on
    for key in SAMPLE_KEYS:
        assert scores[key] == pytest.approx(expected[key], rel=1e-6, abs=1e-7), key
    record = json.loads((Path(trainer.log_dir) / "disentanglement.jsonl").read_text().splitlines()[-1])
    assert record["dci_estimator"] == "random_forest" and callback.settings.dci_estimator == "random_forest"


def test_callback_scores_attribute_data_on_the_validation_codes(tmp_path):
    dm = celeba(tmp_path)
    callback = DisentanglementMetrics(every_n_epochs=1, preset=TINY_PRESET, seed=1)
    model = CentroidCodes(in_channels=3)
    trainer = fit(tmp_path, model, dm, [callback])
    scores = logged(trainer)
    assert set(SAMPLE_KEYS) <= set(scores) and not {"factorvae_score", "betavae_score"} & set(scores)
    # independently: μ and the attributes of every validation image, in dataset order
    batches = [dm.on_after_batch_transfer(batch, 0) for batch in dm.val_dataloader()]
    order = np.argsort(torch.cat([b["index"] for b in batches]).numpy())
    with torch.no_grad():
        codes = torch.cat([model.embed(b["image"]) for b in batches]).numpy()[order]
    attributes = torch.cat([b["attributes"] for b in batches]).numpy()[order]
    expected = evaluate_codes(codes, attributes, TINY_PRESET, seed=1)
    for key in SAMPLE_KEYS:
        assert scores[key] == pytest.approx(expected[key], rel=1e-5, abs=1e-6), key
    assert callback.last["basis"] == "celeba validation split, 3 attributes" and callback.last["n"] == 24


def test_off_by_default_and_models_without_embed_or_data_without_ground_truth_warn_once(tmp_path, image_folder):
    from betavae.data import ImageFolderDataModule

    off = DisentanglementMetrics()
    trainer = fit(tmp_path / "off", CentroidCodes(), ShapesDataModule(num_images=32, image_size=16), [off])
    assert "mig" not in logged(trainer) and off.last is None

    class NoEmbed(CentroidCodes):
        embed = None

        def reconstruct(self, x: torch.Tensor, label: torch.Tensor | None = None) -> torch.Tensor:
            return self.decode(self.encode(x).mean)

    with pytest.warns(UserWarning, match="NoEmbed has no method embed") as record:
        fit(tmp_path / "a", NoEmbed(), ShapesDataModule(num_images=32, image_size=16), [DisentanglementMetrics(1)])
    assert len([w for w in record if "DisentanglementMetrics" in str(w.message)]) == 1
    folder = ImageFolderDataModule(root=str(image_folder), image_size=16, batch_size=4)
    with pytest.warns(UserWarning, match="has no ground truth"):
        trainer = fit(tmp_path / "b", CentroidCodes(in_channels=3), folder, [DisentanglementMetrics(1)])
    assert "mig" not in logged(trainer)


def test_a_metric_failure_is_one_warning_and_training_goes_on(tmp_path):
    dm = celeba(tmp_path, count=8)  # 2 validation images: too few to split
    with pytest.warns(UserWarning, match="no metrics at epoch 0"):
        trainer = fit(tmp_path, CentroidCodes(in_channels=3), dm, [DisentanglementMetrics(1, preset=TINY_PRESET)])
    assert "loss" in logged(trainer) and "mig" not in logged(trainer)


# ---------------------------------------------------------------- traversal labels
def test_traversal_rows_name_the_factor_each_dimension_follows(tmp_path):
    dm = ShapesDataModule(num_images=2000, image_size=16, batch_size=100)  # 500 validation images
    callback = LatentTraversal(dims=[0, 1], gif=False)
    fit(tmp_path, CentroidCodes(), dm, [callback])
    assert callback.last_captions[0].startswith("pos_x ↑ (MI ") and callback.last_captions[1].startswith("pos_y ↑")
    assert float(callback.last_captions[0][-5:-1]) > 0.5
    assert row_label(0, callback.last_kl, callback.last_captions[0]).startswith("z0 · KL 0.")
    assert row_label(3, None, None) == "z3"
    kl = torch.tensor([1.8, 0.004])
    assert row_label(0, kl, "pos_x ↑ (MI 0.63)") == "z0 · KL 1.80 · pos_x ↑ (MI 0.63)"
    assert row_label(1, kl, "shape ↑ (MI 0.14)") == "z1 · KL 0.00 · inactive"  # a row that moves nothing


def test_traversal_rows_name_the_attribute_with_its_auc(tmp_path):
    dm = celeba(tmp_path)
    callback = LatentTraversal(dims=[2], gif=False)
    fit(tmp_path, CentroidCodes(in_channels=3), dm, [callback])
    assert callback.last_captions[2] == "Bright ↑ (AUC 1.00)"


# ---------------------------------------------------------------- codes and columns
def test_class_labels_become_one_binary_column_per_class_and_constant_columns_go():
    labels = np.array([[0], [2], [2], [0], [2]])
    columns, names, dropped = ground_truth_columns(labels, ("class",), "labels", ["T-shirt", "Trouser", "Bag"])
    assert names == ("T-shirt", "Bag") and dropped == ()  # Trouser never occurs: no column
    assert columns.tolist() == [[1, 0], [0, 1], [0, 1], [1, 0], [0, 1]]
    attributes = np.array([[1, 0, 1], [0, 0, 1], [1, 0, 1]])
    columns, names, dropped = ground_truth_columns(attributes, ("Male", "Bald", "Young"), "attributes")
    assert names == ("Male",) and dropped == ("Bald", "Young") and columns.shape == (3, 1)


def test_class_captions_use_the_class_names():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 400)
    codes = np.stack([labels == 1, rng.normal(size=400)], axis=1).astype(float)  # z0: "is it a Trouser?"

    class Labels:
        classes = ["T-shirt", "Trouser", "Bag"]

    captions = dimension_captions(codes, labels[:, None], ("class",), Labels())
    assert captions[0] == "Trouser ↑ (AUC 1.00)"


def collect(batches: list[dict[str, Any]], max_images: int, world_size: int) -> ValidationCodes:
    class Data:  # factors named like a ground-truth data module's
        factor_names = ("a", "b")
        factor_sizes = (2, 3)

        def sample_factors(self, n, rng): ...

        def images_of(self, factors): ...

    class World:
        def __init__(self, world_size: int) -> None:
            self.world_size = world_size

    codes = ValidationCodes(max_images)
    codes.reset(World(world_size))
    for batch in batches:
        codes.add(batch["codes"], batch, Data())
    return codes


@pytest.mark.parametrize("max_images", [6, 7, 100])
def test_codes_gathered_from_two_ranks_are_the_single_process_rows(max_images):
    from torch.utils.data import DistributedSampler

    index = torch.tensor([7, 3, 9, 0, 4, 8, 1, 6, 2, 5, 10])  # the validation split's dataset indices, in order
    items = [
        {"codes": torch.tensor([[float(i), -float(i)]]), "factors": torch.tensor([[i % 2, i % 3]]), "index": i[None]}
        for i in index
    ]

    def batches(positions: list[int]) -> list[dict[str, Any]]:  # batches of 2, as the loader collates them
        chunks = [positions[k : k + 2] for k in range(0, len(positions), 2)]
        return [{key: torch.cat([items[p][key] for p in chunk]) for key in items[0]} for chunk in chunks]

    single = collect(batches(list(range(len(items)))), max_images, 1).gather(None)
    ranks = [collect(batches(list(DistributedSampler(items, 2, r, shuffle=False))), max_images, 2) for r in (0, 1)]
    local = [rank.local_rows() for rank in ranks]  # rank 1 repeats image 0 to even out the ranks
    m = max(len(c) for c, _ in local)
    pad = lambda t: torch.cat([t, t.new_zeros(m - len(t), t.shape[1])])  # noqa: E731
    codes, rows = interleave_ranks(
        torch.tensor([len(c) for c, _ in local]),
        torch.stack([pad(c) for c, _ in local]),
        torch.stack([pad(r) for _, r in local]),
    )
    gathered = ranks[0].finish(codes, rows)
    n = min(max_images, len(items))
    expected = np.sort(index[:n].numpy())  # the loader's first n images, in dataset order
    assert np.array_equal(single[0][:, 0], expected) and np.array_equal(gathered[0][:, 0], expected)
    assert np.array_equal(single[1], gathered[1]) and np.array_equal(single[1][:, 1], expected % 3)


def test_a_conditional_model_is_scored_on_the_validation_images_with_their_labels(tmp_path, caplog):
    from betavae.models import ConditionalVAE

    dm = dsprites(tmp_path)  # batches carry "label", the shape
    model = ConditionalVAE(num_classes=3, in_channels=1, image_size=16, **conv_nets(8, 16), latent_dim=4)
    callback = DisentanglementMetrics(every_n_epochs=1, preset=TINY_PRESET)
    with caplog.at_level("INFO"):
        trainer = fit(tmp_path, model, dm, [callback])
    assert "encodes with class labels" in caplog.text and not callback.on_grid
    scores = logged(trainer)
    assert set(SAMPLE_KEYS) <= set(scores) and "betavae_score" not in scores
    assert callback.last["basis"] == "dsprites validation split, 5 factors" and callback.last["n"] == 54


def test_bad_settings_are_config_errors():
    from betavae.errors import ConfigError

    with pytest.raises(ConfigError, match="every_n_epochs must be >= 1"):
        DisentanglementMetrics(every_n_epochs=0)
    with pytest.raises(ValueError, match="preset must be 'default', 'fast' or a Preset"):
        DisentanglementMetrics(preset="slow")
    with pytest.raises(ConfigError, match="dci_estimator must be one of 'gbt', 'random_forest'; got 'lasso'"):
        DisentanglementMetrics(dci_estimator="lasso")
    with pytest.raises(ConfigError, match="label_images must be at least 2"):
        LatentTraversal(label_images=1)
