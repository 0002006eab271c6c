"""The DCGAN baseline: the nets against their references, the value range, the losses, training, resume,
the callbacks and the evaluate/report commands."""

from __future__ import annotations

import csv
import json
import math
import os
import re
import sys
from functools import partial
from pathlib import Path

import lightning as L
import pytest
import torch
from helpers import run_process
from torch import nn

from betavae.callbacks import FID, ImageGrids, LatentTraversal, ReconstructionMetrics
from betavae.cli import BetaVAECLI, main
from betavae.data import ShapesDataModule
from betavae.fid import PixelFeatures
from betavae.models import DCGAN, NonFiniteLossError
from betavae.nets import ChapterDiscriminator, ChapterGenerator, RadfordDiscriminator, RadfordGenerator


def tiny_gan(size: int = 16, channels: int = 1) -> DCGAN:
    return DCGAN(
        generator=partial(RadfordGenerator, features=8),
        discriminator=partial(RadfordDiscriminator, features=8),
        latent_dim=6,
        in_channels=channels,
        image_size=size,
    )


def tiny_data(num_images: int = 32) -> ShapesDataModule:
    return ShapesDataModule(num_images=num_images, image_size=16, batch_size=4)


def quiet_trainer(tmp_path: Path, **kwargs) -> L.Trainer:
    defaults = {
        "max_epochs": 1,
        "limit_train_batches": 2,
        "logger": L.pytorch.loggers.CSVLogger(tmp_path),
        "enable_checkpointing": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
    }
    return L.Trainer(**{**defaults, **kwargs})


# ---------------------------------------------------------------- the nets against their references
def pytorch_dcgan_example(nz: int = 100, ngf: int = 64, ndf: int = 64, nc: int = 3) -> tuple[nn.Module, nn.Module]:
    """Generator and discriminator transcribed from the PyTorch examples' dcgan/main.py (64x64)."""
    g = nn.Sequential(
        nn.ConvTranspose2d(nz, ngf * 8, 4, 1, 0, bias=False),
        nn.BatchNorm2d(ngf * 8),
        nn.ReLU(True),
        nn.ConvTranspose2d(ngf * 8, ngf * 4, 4, 2, 1, bias=False),
        nn.BatchNorm2d(ngf * 4),
        nn.ReLU(True),
        nn.ConvTranspose2d(ngf * 4, ngf * 2, 4, 2, 1, bias=False),
        nn.BatchNorm2d(ngf * 2),
        nn.ReLU(True),
        nn.ConvTranspose2d(ngf * 2, ngf, 4, 2, 1, bias=False),
        nn.BatchNorm2d(ngf),
        nn.ReLU(True),
        nn.ConvTranspose2d(ngf, nc, 4, 2, 1, bias=False),
        nn.Tanh(),
    )
    d = nn.Sequential(
        nn.Conv2d(nc, ndf, 4, 2, 1, bias=False),
        nn.LeakyReLU(0.2, inplace=True),
        nn.Conv2d(ndf, ndf * 2, 4, 2, 1, bias=False),
        nn.BatchNorm2d(ndf * 2),
        nn.LeakyReLU(0.2, inplace=True),
        nn.Conv2d(ndf * 2, ndf * 4, 4, 2, 1, bias=False),
        nn.BatchNorm2d(ndf * 4),
        nn.LeakyReLU(0.2, inplace=True),
        nn.Conv2d(ndf * 4, ndf * 8, 4, 2, 1, bias=False),
        nn.BatchNorm2d(ndf * 8),
        nn.LeakyReLU(0.2, inplace=True),
        nn.Conv2d(ndf * 8, 1, 4, 1, 0, bias=False),
        nn.Sigmoid(),
    )
    return g, d


def test_radford_pair_matches_the_pytorch_dcgan_example_layer_for_layer():
    torch.manual_seed(0)
    g, d = RadfordGenerator(100, 3, 64), RadfordDiscriminator(3, 64)
    ref_g, ref_d = pytorch_dcgan_example()
    # the example's printed sizes: 3,576,704 and 2,765,568 parameters
    assert sum(p.numel() for p in g.parameters()) == sum(p.numel() for p in ref_g.parameters()) == 3_576_704
    assert sum(p.numel() for p in d.parameters()) == sum(p.numel() for p in ref_d.parameters()) == 2_765_568
    ref_g.load_state_dict(dict(zip(ref_g.state_dict(), g.state_dict().values(), strict=True)))
    ref_d.load_state_dict(dict(zip(ref_d.state_dict(), d.state_dict().values(), strict=True)))
    g.eval(), d.eval(), ref_g.eval(), ref_d.eval()
    z = torch.randn(3, 100)
    with torch.no_grad():
        images = g(z)
        torch.testing.assert_close(images, ref_g(z[:, :, None, None]))
        torch.testing.assert_close(torch.sigmoid(d(images)), ref_d(images).flatten())  # logits, sigmoid in the loss
    assert images.shape == (3, 3, 64, 64) and images.abs().max() <= 1
    # N(0, 0.02) initialisation of the conv weights, N(1, 0.02) of the BatchNorm scales
    convs = torch.cat([m.weight.flatten() for m in g.modules() if isinstance(m, nn.ConvTranspose2d)])
    assert abs(float(convs.std()) - 0.02) < 0.001 and abs(float(convs.mean())) < 0.001
    scales = torch.cat([m.weight for m in d.modules() if isinstance(m, nn.BatchNorm2d)])
    assert abs(float(scales.mean()) - 1.0) < 0.01


def test_chapter_pair_has_the_chapter_layers_and_sizes():
    g, d = ChapterGenerator(100, 1, 28), ChapterDiscriminator(1, 28)
    # Keras' summary of the chapter's models, less BatchNorm's moving statistics (buffers here)
    assert sum(p.numel() for p in g.parameters()) == 633_472 + 256 + 204_864 + 128 + 1_601
    assert sum(p.numel() for p in d.parameters()) == 1_664 + 204_928 + 6_273
    ups = [m for m in g.modules() if isinstance(m, nn.ConvTranspose2d)]
    assert [(u.in_channels, u.out_channels, u.kernel_size, u.stride) for u in ups] == [
        (128, 64, (5, 5), (2, 2)),
        (64, 1, (5, 5), (2, 2)),
    ]
    assert [type(m) for m in g.body] == [
        nn.BatchNorm2d,
        nn.ConvTranspose2d,
        nn.SELU,
        nn.BatchNorm2d,
        nn.ConvTranspose2d,
        nn.Tanh,
    ]
    leaky = [m for m in d.modules() if isinstance(m, nn.LeakyReLU)]
    drops = [m for m in d.modules() if isinstance(m, nn.Dropout)]
    assert [m.negative_slope for m in leaky] == [0.2, 0.2] and [m.p for m in drops] == [0.4, 0.4]
    torch.manual_seed(0)
    with torch.no_grad():
        images = g.eval()(torch.randn(5, 100))
        sizes = [tuple(d.features[:i](images).shape[-2:]) for i in (1, 4)]
    assert images.shape == (5, 1, 28, 28) and sizes == [(14, 14), (7, 7)]  # "same" padding halves exactly
    assert d(images).shape == (5,)


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: RadfordGenerator(100, 3, 28), "not 4 \\* 2\\*\\*k"),
        (lambda: RadfordDiscriminator(3, 48), "not 4 \\* 2\\*\\*k"),
        (lambda: ChapterGenerator(100, 1, 30), "not divisible by 4"),
        (lambda: ChapterDiscriminator(1, 28, dropout=1.0), "dropout must be in"),
        (lambda: DCGAN(RadfordGenerator, RadfordDiscriminator, latent_dim=0), "latent_dim"),
        (  # an optimizer is built (and checked) when Lightning asks for it, since issue 21's class-path arguments
            lambda: DCGAN(RadfordGenerator, RadfordDiscriminator, generator_optimizer="sgd").configure_optimizers(),
            "optimizer must be a class path",
        ),
    ],
)
def test_impossible_gans_fail_at_construction_with_a_reason(build, message):
    with pytest.raises(ValueError, match=message):
        build()


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("size", [16, 32, 64])
def test_radford_pair_at_every_size(size, channels):
    g, d = RadfordGenerator(8, channels, size, features=4), RadfordDiscriminator(channels, size, features=4)
    images = g(torch.randn(2, 8))
    assert images.shape == (2, channels, size, size) and d(images).shape == (2,)


# ---------------------------------------------------------------- value range and losses
def test_samples_are_normalized_images_whose_pixels_are_the_rescaled_tanh():
    model = tiny_gan(channels=3).eval()
    z = torch.randn(4, 6, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        t = model.generator(z)
        torch.testing.assert_close(model.to_pixels(model.decode(z)), (t + 1) / 2)
        a = model.sample(4, generator=torch.Generator().manual_seed(0))
        b = model.sample(4, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(a, model.decode(z))  # sample draws z ~ N(0, I) with the generator given
    assert torch.equal(a, b) and a.shape == (4, 3, 16, 16)
    # the discriminator's input range: real images rescaled to [-1, 1] as the chapter does
    pixels = torch.rand(2, 3, 16, 16)
    torch.testing.assert_close(model.to_tanh_range(model.normalize(pixels)), pixels * 2 - 1)


def test_validation_losses_against_a_hand_computation_and_independent_of_batching():
    torch.manual_seed(0)
    model = tiny_gan().eval()
    x = model.normalize(torch.rand(6, 1, 16, 16))
    index = torch.arange(20, 26)
    with torch.no_grad():
        parts = model.loss_parts({"image": x, "index": index})
        halves = [model.loss_parts({"image": x[s], "index": index[s]}) for s in (slice(3, 6), slice(0, 3))]
        torch.manual_seed(123)  # another global RNG state changes nothing
        again = model.loss_parts({"image": x, "index": index})
        z = torch.stack([torch.randn(6, generator=torch.Generator().manual_seed(int(i))) for i in index])
        p_real = torch.sigmoid(model.discriminator(model.to_pixels(x) * 2 - 1))
        p_fake = torch.sigmoid(model.discriminator(model.generator(z)))
    d_loss = -0.5 * (torch.log(p_real).mean() + torch.log(1 - p_fake).mean())
    torch.testing.assert_close(parts["d_loss"], d_loss)
    torch.testing.assert_close(parts["g_loss"], -torch.log(p_fake).mean())
    torch.testing.assert_close(parts["d_real"], p_real.mean())
    torch.testing.assert_close(parts["d_fake"], p_fake.mean())
    torch.testing.assert_close(parts["loss"], math.log(2) - d_loss)
    assert torch.equal(parts["loss"], again["loss"])
    torch.testing.assert_close(parts["d_loss"], (halves[0]["d_loss"] + halves[1]["d_loss"]) / 2)


class _ConstantGenerator(nn.Module):
    """Every fake is the all-black image (-1 everywhere)."""

    def __init__(self, latent_dim: int, channels: int, size: int) -> None:
        super().__init__()
        self.shape = (channels, size, size)
        self.unused = nn.Parameter(torch.zeros(1))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return torch.full((z.shape[0], *self.shape), -1.0)


class _Oracle(nn.Module):
    """A discriminator that tells the all-black fakes from uniform-noise real images."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.where(x.flatten(1).mean(1) > -0.99, 20.0, -20.0)  # logits: real, fake


def test_the_jsd_bound_is_zero_for_a_blind_discriminator_and_ln2_for_a_perfect_one():
    model = DCGAN(
        _ConstantGenerator, partial(RadfordDiscriminator, features=4), latent_dim=2, in_channels=1, image_size=16
    )
    batch = {"image": model.normalize(torch.rand(4, 1, 16, 16)), "index": torch.arange(4)}
    model.eval()
    with torch.no_grad():
        for p in model.discriminator.parameters():
            p.zero_()  # D(x) = 1/2 for every image: it cannot tell
        assert float(model.loss_parts(batch)["loss"]) == pytest.approx(0.0, abs=1e-6)
        model.discriminator = _Oracle()
        parts = model.loss_parts(batch)
    assert float(parts["loss"]) == pytest.approx(math.log(2), abs=1e-6)
    assert float(parts["d_real"]) == pytest.approx(1.0) and float(parts["d_fake"]) == pytest.approx(0.0, abs=1e-6)


# ---------------------------------------------------------------- training
def test_training_alternates_both_updates_and_logs_the_chapter_keys(tmp_path):
    torch.manual_seed(0)
    model = tiny_gan()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    trainer = quiet_trainer(tmp_path, log_every_n_steps=1, limit_val_batches=1)
    trainer.fit(model, tiny_data())
    assert trainer.global_step == 4  # two updates per batch
    changed = {k.split(".")[0] for k, v in model.state_dict().items() if not torch.equal(v, before[k])}
    assert changed == {"generator", "discriminator"}
    logged = set(trainer.callback_metrics)
    assert {"train/d_loss", "train/g_loss", "train/d_real", "train/d_fake"} <= logged
    assert {"val/loss", "val/d_loss", "val/g_loss", "val/d_real", "val/d_fake"} <= logged
    assert 0 < float(trainer.callback_metrics["train/d_real"]) < 1


def test_a_non_finite_discriminator_loss_stops_before_the_update(tmp_path):
    model = tiny_gan()
    with torch.no_grad():
        model.discriminator.net[-1].weight.fill_(float("nan"))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(NonFiniteLossError, match="d_loss=nan"):
        quiet_trainer(tmp_path).fit(model, tiny_data())
    for key, value in model.state_dict().items():
        if "running" not in key and "num_batches" not in key:  # BatchNorm statistics move in the forward pass
            assert torch.equal(value, before[key]) or value.isnan().all(), key


def test_predict_gives_the_discriminators_probability_per_image(tmp_path):
    model, data = tiny_gan(), tiny_data()
    out = quiet_trainer(tmp_path).predict(model, datamodule=data)
    probs = torch.cat([o["d_real"] for o in out])
    assert len(probs) == 8 and torch.all((probs > 0) & (probs < 1))
    assert torch.equal(torch.cat([o["index"] for o in out]), torch.tensor(data.val_set.indices))


# ---------------------------------------------------------------- the CLI: resume, callbacks, evaluate, report
GAN = [
    "--model=betavae.models.DCGAN",
    "--model.init_args.generator=betavae.nets.RadfordGenerator",
    "--model.init_args.generator.init_args.features=8",
    "--model.init_args.discriminator=betavae.nets.RadfordDiscriminator",
    "--model.init_args.discriminator.init_args.features=8",
    "--model.init_args.latent_dim=6",
]
DATA = [
    "--data=betavae.data.ShapesDataModule",
    "--data.init_args.num_images=32",
    "--data.init_args.image_size=16",
    "--data.init_args.batch_size=4",
]
TRAIN = [
    "--trainer.limit_train_batches=2",
    "--trainer.logger=lightning.pytorch.loggers.CSVLogger",
    "--trainer.logger.save_dir=runs",
    "--trainer.enable_model_summary=false",
    "--progress_bar.refresh_rate=0",
]
PIXEL_FID = [
    "--fid.feature_extractor=betavae.fid.PixelFeatures",
    "--fid.num_samples=24",
    "--fid.kid_subset_size=4",
    "--fid.kid_subsets=3",
]


@pytest.mark.slow  # a minute or more: the fast tier keeps to ~12 min on 2 cores; its parts are tested fast elsewhere
def test_resume_restores_both_optimizers_and_the_step(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    common = ["fit", *GAN, *DATA, *TRAIN, "--trainer.logger.name=gan"]
    first = BetaVAECLI(args=[*common, "--trainer.max_epochs=1"])
    assert first.trainer.global_step == 4
    resumed = BetaVAECLI(args=[*common, "--trainer.max_epochs=2", "--ckpt_path=last"])
    assert resumed.trainer.global_step == 8  # continued, not restarted
    ckpt = torch.load(next((tmp_path / "runs" / "gan" / "version_1").rglob("last.ckpt")), weights_only=True)
    assert len(ckpt["optimizer_states"]) == 2
    for state in ckpt["optimizer_states"]:  # Adam's step count: 4 updates of each network, not 2
        assert {float(s["step"]) for s in state["state"].values()} == {4.0}
    betas = {tuple(g["betas"]) for state in ckpt["optimizer_states"] for g in state["param_groups"]}
    assert betas == {(0.5, 0.999)}
    loaded = DCGAN.load_from_checkpoint(next((tmp_path / "runs" / "gan" / "version_1").rglob("last.ckpt")))
    assert loaded.latent_dim == 6 and loaded.image_size == 16 and loaded.in_channels == 1


def test_callbacks_skip_what_needs_an_encoder_and_score_samples(tmp_path):
    fid = FID(every_n_epochs=1, num_samples=12, batch_size=5, kid_subset_size=4, feature_extractor=PixelFeatures())
    callbacks = [ReconstructionMetrics(), fid, LatentTraversal(top_k=2), ImageGrids(num_images=2, num_samples=4)]
    trainer = quiet_trainer(tmp_path, callbacks=callbacks, max_epochs=2)
    with pytest.warns(UserWarning) as record:
        trainer.fit(tiny_gan(), tiny_data())
    messages = [str(w.message) for w in record]
    for expected in (
        "ReconstructionMetrics: DCGAN has no method reconstruct(); no val/psnr",
        "LatentTraversal: DCGAN has no method encode(); no traversals",
        "ImageGrids: DCGAN has no method reconstruct(); sample grids only",
    ):
        assert sum(expected in m for m in messages) == 1, (expected, messages)
    names = sorted(p.name for p in (Path(trainer.log_dir) / "images").iterdir())
    assert names == ["samples_epoch=000.png", "samples_epoch=001.png"]
    assert {"val/fid", "val/kid"} <= set(trainer.callback_metrics)
    assert "val/psnr" not in trainer.callback_metrics


def test_evaluate_and_report_put_the_gans_fid_beside_the_vaes(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    vae = [
        "--model=betavae.models.BetaVAE",
        "--model.init_args.encoder.init_args.hidden_channels=[8,16]",
        "--model.init_args.decoder.init_args.hidden_channels=[8,16]",
        "--model.init_args.latent_dim=4",
    ]
    main(["fit", *vae, *DATA, *TRAIN, "--trainer.max_epochs=1", "--trainer.logger.name=vae"])
    main(["fit", *GAN, *DATA, *TRAIN, "--trainer.max_epochs=1", "--trainer.logger.name=gan"])
    for name in ("vae", "gan"):
        # FID and the report here; the disentanglement suite on shapes is tested in test_evaluation.py (its default
        # preset, disentanglement_lib's sizes, took 15 of this test's 18 minutes under load)
        main(
            [
                "evaluate",
                f"--ckpt_path=runs/{name}/version_0/checkpoints/last.ckpt",
                *PIXEL_FID,
                "--disentanglement_preset=none",
            ]
        )
    result = json.loads(Path("runs/gan/version_0/evaluation/last.json").read_text())
    assert result["model"] == "DCGAN" and result["fid"] > 0 and result["fid_num_samples"] == 24
    assert result["ssim"] is None and result["psnr"] is None and "no method reconstruct" in result["evaluated_on"]
    main(["report", "runs/vae", "runs/gan", "--output_dir", "report"])
    tables = Path("report/study_tables.md").read_text()
    recon, fid = tables.split("## ")[1:3]
    assert "| shapes | 4 |" in recon and "DCGAN" not in recon
    fid_rows = [line for line in fid.splitlines() if line.startswith("| shapes")]
    assert len(fid_rows) == 2 and fid_rows[0].startswith("| shapes | DCGAN | — |") and "24 / shapes" in fid_rows[0]
    assert fid_rows[1].startswith("| shapes | 4 |")
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:  # a known error: its message, no traceback
        main(["traverse", "--ckpt_path=runs/gan/version_0/checkpoints/last.ckpt"])
    assert exit_info.value.code == 1
    assert re.search(r"DCGAN has no method encode\(\).*no encoder", capsys.readouterr().err)


def test_report_takes_a_gans_fid_from_its_training_log(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    main(["fit", *GAN, *DATA, *TRAIN, "--trainer.max_epochs=1", "--fid.every_n_epochs=1", *PIXEL_FID])
    main(["report", "runs", "--output_dir", "report"])
    fid = Path("report/study_tables.md").read_text().split("## ")[2]
    row = next(line for line in fid.splitlines() if line.startswith("| shapes"))
    assert row.startswith("| shapes | DCGAN | — |") and "24 / shapes validation split" in row


def test_ddp_needs_unused_parameter_detection_and_then_logs_the_single_process_scores(tmp_path, monkeypatch):
    """Two CPU processes (gloo): each update leaves the other network without gradients, which DDP accepts with
    ``ddp_find_unused_parameters_true``; the validation scores it logs equal one process's on the checkpoint."""
    # 64 shapes: 16 validation images = 2 ranks x 2 batches x 4, so the distributed sampler repeats none
    common = [*GAN, DATA[0], "--data.init_args.num_images=64", *DATA[2:], "--trainer.accelerator=cpu", *TRAIN[1:]]
    fit = ["fit", *common, "--trainer.logger.name=ddp", "--trainer.limit_train_batches=3", "--trainer.max_epochs=1"]
    env = {**os.environ, "WANDB_MODE": "offline"}
    strategy = ["--trainer.strategy=ddp_find_unused_parameters_true", "--trainer.devices=2"]
    run_process([sys.executable, "-m", "betavae", *fit, *strategy, "--seed_everything=0"], env, 600, cwd=tmp_path)
    run = tmp_path / "runs" / "ddp" / "version_0"
    with (run / "metrics.csv").open() as f:
        ddp = next(r for r in csv.DictReader(f) if r.get("val/loss"))
    monkeypatch.chdir(tmp_path)
    args = ["validate", *common, "--trainer.logger.name=single", "--trainer.devices=1"]
    single = BetaVAECLI(args=[*args, f"--ckpt_path={run / 'checkpoints' / 'last.ckpt'}"]).trainer.callback_metrics
    for key in ("val/loss", "val/d_loss", "val/g_loss", "val/d_real", "val/d_fake"):
        assert float(ddp[key]) == pytest.approx(float(single[key]), rel=1e-5, abs=1e-5), key  # float32 sums
