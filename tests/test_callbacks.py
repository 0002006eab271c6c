"""What every evaluation callback owes the run: mode and RNG untouched, nothing from non-zero ranks,
clear degradation for models that lack an API, and the quickstart's outputs."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import lightning as L
import pytest
import torch
from conftest import conv_nets
from helpers import CountingFeatures, KnownKL, flush_wandb
from lightning.pytorch.strategies import SingleDeviceStrategy

import betavae.callbacks.images as images_module
import betavae.callbacks.traversal as traversal_module
import betavae.fid.weights as fid_module
from betavae.callbacks import FID, ImageGrids, LatentTraversal, ReconstructionMetrics
from betavae.callbacks._common import due
from betavae.cli import main
from betavae.data import ShapesDataModule
from betavae.model_api import api_problem, evaluating
from betavae.models import BetaVAE


def every_callback() -> list[L.Callback]:
    return [
        ReconstructionMetrics(),
        FID(every_n_epochs=1, num_samples=12, batch_size=5, kid_subset_size=4, feature_extractor=CountingFeatures()),
        LatentTraversal(top_k=3),
        ImageGrids(num_images=4, num_samples=4),
    ]


def tiny_model() -> BetaVAE:
    return BetaVAE(latent_dim=4, **conv_nets(8, 16), in_channels=1, image_size=16)


def tiny_data() -> ShapesDataModule:
    return ShapesDataModule(num_images=32, image_size=16, batch_size=4)


def test_evaluating_restores_mode_and_rng_even_after_an_error():
    model = tiny_model().train()
    state = torch.get_rng_state()
    with pytest.raises(RuntimeError, match="boom"), evaluating(model):
        assert not model.training and not torch.is_grad_enabled()
        torch.rand(10)
        raise RuntimeError("boom")
    assert model.training and torch.equal(torch.get_rng_state(), state)
    model.eval()
    with evaluating(model):
        torch.randn(3)
    assert not model.training and torch.equal(torch.get_rng_state(), state)


def test_api_problem_names_what_is_missing():
    model = tiny_model()
    assert api_problem(model, encode=1, decode=1, sample=1, reconstruct=1, to_pixels=1) is None
    assert api_problem(torch.nn.Linear(2, 2), sample=1) == "Linear has no method sample()"

    class Conditional(BetaVAE):
        def decode(self, z: torch.Tensor, label: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
            return super().decode(z)

    problem = api_problem(Conditional(latent_dim=4, **conv_nets(8, 16), in_channels=1, image_size=16), decode=1)
    assert problem is not None and "Conditional.decode(z" in problem and "label" in problem


class Probe(L.Callback):
    """Placed before and after the callbacks under test: records the model's mode and the RNG state
    that each hook found, and what the next probe found after the callbacks in between ran."""

    def __init__(self, log: list) -> None:
        self.records = log

    def _record(self, hook: str, pl_module: L.LightningModule) -> None:
        self.records.append((hook, pl_module.training, torch.get_rng_state().clone()))

    def on_validation_batch_end(self, trainer, pl_module, *args: Any) -> None:
        self._record("batch", pl_module)

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        self._record("epoch", pl_module)


def test_callbacks_leave_mode_and_rng_as_they_found_them_in_a_run(tmp_path):
    before, after = [], []
    trainer = L.Trainer(
        max_epochs=2,
        limit_train_batches=2,
        callbacks=[Probe(before), *every_callback(), Probe(after)],
        logger=L.pytorch.loggers.CSVLogger(tmp_path),
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(tiny_model(), tiny_data())
    assert len(before) == len(after) > 4
    for (hook, mode, rng), (hook_after, mode_after, rng_after) in zip(before, after, strict=True):
        assert hook == hook_after and mode == mode_after and torch.equal(rng, rng_after), hook
    assert {"val/psnr", "val/ssim", "val/fid", "val/kid"} <= set(trainer.callback_metrics)


def test_epoch_end_drawing_restores_training_mode(tmp_path):
    """Called while the model trains (as in a validation run every n steps): it is still training after."""
    callbacks = [LatentTraversal(top_k=2), ImageGrids(num_images=2, num_samples=4)]
    trainer = L.Trainer(
        max_epochs=1,
        limit_train_batches=1,
        callbacks=callbacks,
        logger=L.pytorch.loggers.CSVLogger(tmp_path),
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    model = tiny_model()
    data = tiny_data()
    trainer.fit(model, data)
    batch = next(data.eval_batches("val"))
    for callback in callbacks:
        model.train()
        state = torch.get_rng_state()
        callback.on_validation_epoch_start(trainer, model)
        callback.on_validation_batch_end(trainer, model, None, batch, 0)
        callback.on_validation_epoch_end(trainer, model)
        assert model.training and torch.equal(torch.get_rng_state(), state), type(callback).__name__


class RankOne(SingleDeviceStrategy):
    """A single process that believes it is rank 1 of a larger job."""

    @property
    def global_rank(self) -> int:
        return 1

    @global_rank.setter
    def global_rank(self, value: int) -> None:
        pass

    @property
    def is_global_zero(self) -> bool:
        return False

    @property
    def world_size(self) -> int:
        return 2

    @world_size.setter
    def world_size(self, value: int) -> None:
        pass


def test_nothing_is_drawn_written_or_shown_on_a_non_zero_rank(tmp_path, monkeypatch):
    shown = []
    for module in (images_module, traversal_module):
        monkeypatch.setattr(module, "log_image", lambda *args, **kwargs: shown.append(args[1]))
    trainer = L.Trainer(
        strategy=RankOne(device=torch.device("cpu")),
        max_epochs=1,
        limit_train_batches=2,
        callbacks=every_callback(),
        logger=L.pytorch.loggers.CSVLogger(tmp_path),
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(tiny_model(), tiny_data())
    assert shown == []
    assert not list(tmp_path.rglob("*.png")) and not list(tmp_path.rglob("*.gif"))
    assert not list(tmp_path.rglob("fid.jsonl"))
    assert "val/psnr" in trainer.callback_metrics  # the scores are still computed: every rank takes part


def test_image_grids_without_sample_warn_once_and_draw_reconstructions(tmp_path):
    class NoSample(KnownKL):
        sample = None  # type: ignore[assignment]

    trainer = L.Trainer(
        max_epochs=2,
        limit_train_batches=1,
        callbacks=[ImageGrids(num_images=2)],
        logger=L.pytorch.loggers.CSVLogger(tmp_path),
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    with pytest.warns(UserWarning, match="reconstruction grids only") as record:
        trainer.fit(NoSample(), tiny_data())
    assert len([w for w in record if "ImageGrids" in str(w.message)]) == 1
    names = sorted(p.name for p in (Path(trainer.log_dir) / "images").iterdir())
    assert names == ["reconstructions_epoch=000.png", "reconstructions_epoch=001.png"]


def test_due_follows_the_period_the_last_epoch_and_validate():
    class FakeTrainer:
        def __init__(self, epoch: int, fn: str = "fit") -> None:
            self.current_epoch, self.max_epochs, self.fast_dev_run = epoch, 10, False
            self.state = type("State", (), {"fn": fn})()

    assert [e for e in range(10) if due(FakeTrainer(e), 3)] == [2, 5, 8, 9]
    assert due(FakeTrainer(0, "validate"), 3)


def test_quickstart_shows_psnr_ssim_traversals_and_grids_in_the_run_and_the_offline_wandb_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))  # no FID weights here, whatever the machine has
    monkeypatch.setattr(fid_module.urllib.request, "urlopen", lambda *a, **k: (_ for _ in ()).throw(OSError("off")))
    main(
        [
            "fit",
            "--config",
            "quickstart.yaml",
            "--data.init_args.num_images=24",
            "--data.init_args.image_size=32",
            "--model.init_args.encoder.init_args.hidden_channels=[8,16]",
            "--model.init_args.decoder.init_args.hidden_channels=[8,16]",
            "--trainer.max_epochs=1",
            "--trainer.limit_train_batches=2",
            "--data.init_args.batch_size=4",
            "--progress_bar.refresh_rate=0",
        ]
    )
    run = tmp_path / "runs" / "quickstart" / "version_0"
    with (run / "metrics.csv").open() as f:
        rows = [r for r in csv.DictReader(f) if r.get("val/psnr")]
    assert rows and 0 < float(rows[0]["val/ssim"]) <= 1 and float(rows[0]["val/psnr"]) > 0
    images = {p.name for p in (run / "images").iterdir()}
    assert {
        "traversal_epoch=000.png",
        "traversal_epoch=000.gif",
        "reconstructions_epoch=000.png",
        "samples_epoch=000.png",
    } <= images
    media = {
        p.name.split("_")[0]
        for p in (tmp_path / "runs" / "quickstart" / "wandb").glob("offline-run-*/files/media/images/val/*.png")
    }
    assert {"traversal", "reconstructions", "samples"} <= media
    flush_wandb()  # the offline run's history, whole
    histograms = list((tmp_path / "runs" / "quickstart" / "wandb").glob("offline-run-*/run-*.wandb"))
    assert histograms and b"val/kl_per_dim" in histograms[0].read_bytes()  # the KL-per-dimension histogram


def _ddp_worker(rank: int, world: int, port: int, out: str) -> None:
    """One of two gloo processes: score its own, unequal share of the images and features."""
    import os

    from helpers import feature_sets, seeded_pairs

    from betavae.fid import GenerativeScores
    from betavae.scoring.reconstruction import reconstruction_metrics

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.distributed.init_process_group("gloo", rank=rank, world_size=world)
    try:
        recon, target = seeded_pairs(3, 32, seed=5, n=8)
        share = slice(0, 5) if rank == 0 else slice(5, 8)  # 5 and 3 images: a mean of means would be wrong
        metrics = reconstruction_metrics()
        metrics.update(recon[share], target[share])
        a, b = feature_sets(6)
        extractor = torch.nn.Identity()
        extractor.num_features = a.shape[1]
        scores = GenerativeScores(extractor, kid_subsets=3)
        scores.update_features(torch.from_numpy(a[:300] if rank == 0 else a[300:]), real=True)  # 300 and 100
        scores.update_features(torch.from_numpy(b[:100] if rank == 0 else b[100:]), real=False)  # 100 and 200
        result = {k: float(v) for k, v in metrics.compute().items()}
        result.update(scores.compute())
        torch.save(result, Path(out) / f"rank{rank}.pt")
    finally:
        torch.distributed.destroy_process_group()


@pytest.mark.slow
def test_metric_states_are_gathered_across_processes(tmp_path):
    """Two gloo processes with unequal shares: PSNR, SSIM, FID and KID equal the single-process scores of
    all the data, on both ranks (states synced, not per-rank scores averaged)."""
    import socket

    from helpers import feature_sets, scores_with, seeded_pairs

    from betavae.scoring.reconstruction import reconstruction_metrics

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    torch.multiprocessing.spawn(_ddp_worker, args=(2, port, str(tmp_path)), nprocs=2, join=True)
    recon, target = seeded_pairs(3, 32, seed=5, n=8)
    metrics = reconstruction_metrics()
    metrics.update(recon, target)
    a, b = feature_sets(6)
    single = {**{k: float(v) for k, v in metrics.compute().items()}, **scores_with(a, b)}
    for rank in (0, 1):
        result = torch.load(tmp_path / f"rank{rank}.pt")
        for key in ("psnr", "ssim", "fid"):
            assert result[key] == pytest.approx(single[key], rel=1e-5), (rank, key)
        assert result["num_real"] == 400 and result["num_fake"] == 300


@pytest.mark.slow
def test_callbacks_run_under_ddp(tmp_path):
    """Lightning's DDP (two CPU processes): the callbacks' collective steps line up, FID's samples are
    shared out (num_samples in all), and val/psnr of a validation run equals the single-process one."""
    data = ShapesDataModule(num_images=48, image_size=16, batch_size=3)  # 12 validation images, no padding
    common = {
        "logger": False,
        "enable_checkpointing": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "accelerator": "cpu",
        "default_root_dir": tmp_path,
    }
    torch.manual_seed(0)
    model = tiny_model()
    single = L.Trainer(callbacks=[ReconstructionMetrics()], devices=1, **common).validate(model, data, verbose=False)
    ddp = L.Trainer(callbacks=[ReconstructionMetrics()], devices=2, strategy="ddp_spawn", **common)
    scores = ddp.validate(model, data, verbose=False)
    assert scores[0]["val/psnr"] == pytest.approx(single[0]["val/psnr"], rel=1e-5)
    assert scores[0]["val/ssim"] == pytest.approx(single[0]["val/ssim"], rel=1e-5)

    callbacks = [
        ReconstructionMetrics(),
        FID(every_n_epochs=1, num_samples=11, batch_size=4, kid_subset_size=4, feature_extractor=CountingFeatures()),
        LatentTraversal(top_k=2),
    ]
    common.update(logger=L.pytorch.loggers.CSVLogger(tmp_path, name="ddp"))
    L.Trainer(callbacks=callbacks, devices=2, strategy="ddp_spawn", max_epochs=1, limit_train_batches=1, **common).fit(
        tiny_model(), data
    )
    records = (tmp_path / "ddp" / "version_0" / "fid.jsonl").read_text().splitlines()
    assert len(records) == 1 and '"num_samples": 11' in records[0] and '"num_real": 12' in records[0]
    assert (tmp_path / "ddp" / "version_0" / "images" / "traversal_epoch=000.png").is_file()
