"""The CLI end to end: every config, config names, links, errors, resume, the NaN guard."""

from __future__ import annotations

import csv
import importlib
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from conftest import SHAPES, SHAPES_DATA, TINY, write_images
from helpers import flush_wandb

from betavae.cli import BetaVAECLI, main
from betavae.config_names import resolve_config
from betavae.data import ShapesDataModule
from betavae.disentanglement import mig, model_representation, sample_codes
from betavae.models import BetaVAE, NonFiniteLossError
from betavae.resume import epoch_counted_again

REPO = Path(__file__).resolve().parents[1]
CONFIGS = sorted((REPO / "configs").rglob("*.yaml"))
EXPERIMENT_CONFIGS = [c for c in CONFIGS if "model" in (yaml.safe_load(c.read_text()) or {})]


def tiny_data_args(config: Path, tmp_path: Path) -> list[str]:
    """Overrides that point a config's data at something small that exists offline."""
    from conftest import write_dsprites, write_idx_set, write_shapes3d

    data = yaml.safe_load(config.read_text())["data"]
    init = data.get("init_args", {})
    kind = data["class_path"].rsplit(".", 1)[-1]
    args = ["--data.init_args.batch_size=4", "--data.init_args.num_workers=0"]
    root = tmp_path / "data"
    if kind == "CelebADataModule":
        folder = root / "img_align_celeba"
        for i, path in enumerate(write_images(folder, 8, size=(178, 218), suffix=".jpg")):
            path.rename(folder / f"{i + 1:06d}.jpg")  # CelebA's names
    elif kind == "StanfordCarsDataModule":
        write_images(root / "cars_train", 10, size=(120, 80), suffix=".jpg")
        (tmp_path / "front.txt").write_text("".join(f"cars_train/img_{i:04d}.jpg\n" for i in range(8)))
        args.append(f"--data.init_args.file_list={tmp_path / 'front.txt'}")
    elif kind == "BatikDataModule":
        write_images(root, 2, size=(300, 260), mode="L")
        args += ["--data.init_args.num_patches=16", "--data.init_args.patch_size=128"]
    elif kind in ("MNISTDataModule", "FashionMNISTDataModule"):
        write_idx_set(root, n_train=12, n_test=4)
        args.append("--data.init_args.download=false")
    elif kind == "TexturesDataModule":
        args.append("--data.init_args.num_patches=16")
    elif kind == "DSpritesDataModule":
        write_dsprites(root / "dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz")  # a 216-image grid
    elif kind == "Shapes3DDataModule":
        write_shapes3d(root / "3dshapes.h5")  # a 288-image grid
    elif "root" in init:  # any other folder of images (cats, ...)
        write_images(root, 8, size=(178, 218))
    if "root" in init or kind in ("DSpritesDataModule", "Shapes3DDataModule"):
        args.append(f"--data.init_args.root={root}")
    if "num_images" in init or kind == "ShapesDataModule":
        args.append("--data.init_args.num_images=16")
    return args


def missing_data_class(config: Path) -> str | None:
    """Why the config's data class cannot be imported (a rotted config), or ``None``."""
    class_path = yaml.safe_load(config.read_text())["data"]["class_path"]
    module, _, name = class_path.rpartition(".")
    try:
        getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as err:
        return f"{class_path} is not importable yet ({err})"
    return None


@pytest.mark.parametrize("config", EXPERIMENT_CONFIGS, ids=lambda p: str(p.relative_to(REPO / "configs")))
def test_every_config_runs_through_the_cli(config, tmp_path, monkeypatch):
    reason = missing_data_class(config)
    assert reason is None, f"{config.name}: {reason}"  # a config naming a missing class fails, never skips
    monkeypatch.chdir(tmp_path)  # runs/ lands here, not in the repository
    main(
        [
            "fit",
            "--config",
            str(config.relative_to(REPO / "configs")),
            "--trainer.fast_dev_run=true",
            *tiny_data_args(config, tmp_path),
        ]
    )


def test_bare_config_names_resolve_under_configs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert Path(resolve_config("quickstart.yaml")).resolve() == REPO / "configs" / "quickstart.yaml"
    assert Path(resolve_config("quickstart")).resolve() == REPO / "configs" / "quickstart.yaml"
    (tmp_path / "mine.yaml").write_text("trainer: {}\n")
    assert resolve_config("mine.yaml") == "mine.yaml"
    with pytest.raises(FileNotFoundError, match="Available configs: .*quickstart.yaml"):
        resolve_config("no_such_config.yaml")


def test_missing_config_is_a_clean_cli_error(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", "celeba_beta1000.yaml"])
    assert exit_info.value.code != 0
    assert "celeba_beta1000.yaml" in capsys.readouterr().err


def test_print_config_shows_links_once(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit):
        main(["fit", "--config", "quickstart.yaml", "--print_config"])
    printed = yaml.safe_load(capsys.readouterr().out)
    model_args = printed["model"]["init_args"]
    assert printed["model"]["class_path"] == "betavae.models.BetaVAE"
    # channels, size and normalization are written in the data section only
    assert not {"in_channels", "image_size", "mean", "std"} & set(model_args)
    assert printed["data"]["init_args"]["channels"] == 1 and printed["checkpoint"]["monitor"] == "val/loss"


@pytest.mark.parametrize(
    "bad",
    [["--model.init_args.betta=3"], ["--data.init_args.num_imgs=3"], ["--trainer.max_epoch=3"]],
)
def test_unknown_keys_are_named(bad, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit):
        main(["fit", "--config", "quickstart.yaml", *bad])
    key = bad[0].split("=")[0].rsplit(".", 1)[1]
    assert key in capsys.readouterr().err


def test_unknown_key_in_a_config_file_is_named(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    config = yaml.safe_load((REPO / "configs" / "quickstart.yaml").read_text())
    config["model"]["init_args"]["lattent_dim"] = 3
    (tmp_path / "typo.yaml").write_text(yaml.safe_dump(config))
    with pytest.raises(SystemExit):
        main(["fit", "--config", "typo.yaml"])
    assert "lattent_dim" in capsys.readouterr().err


def test_links_carry_the_data_shape_into_the_model(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cli = BetaVAECLI(
        args=[
            *SHAPES,
            "--data.init_args.channels=3",
            "--data.init_args.std=[0.5,0.5,0.5]",
            "--data.init_args.mean=[0.1,0.2,0.3]",
        ],
        run=False,
    )
    assert cli.model.in_channels == 3 and cli.model.image_size == 16
    assert cli.model.pixel_mean.flatten().tolist() == pytest.approx([0.1, 0.2, 0.3])
    assert cli.model.pixel_std.flatten().tolist() == pytest.approx([0.5, 0.5, 0.5])


def read_metrics(run: Path) -> list[dict[str, str]]:
    with open(run / "metrics.csv") as f:
        return list(csv.DictReader(f))


def test_a_run_leaves_checkpoints_config_curves_and_grids(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = ["fit", *SHAPES, *TINY, "--trainer.max_epochs=2"]
    main(args)
    main(args)  # the same config twice: a new version folder, nothing overwritten, no failure
    runs = sorted((tmp_path / "runs" / "test").glob("version_*"))
    assert [r.name for r in runs] == ["version_0", "version_1"]
    run = runs[0]
    assert (run / "config.yaml").is_file() and (run / "checkpoints" / "last.ckpt").is_file()
    assert len(list((run / "checkpoints").glob("best-epoch=*.ckpt"))) == 1
    for name in (
        "loss_curves.png",
        "reconstructions_epoch=000.png",
        "reconstructions_epoch=001.png",
        "samples_epoch=001.png",
    ):
        assert (run / "images" / name).is_file(), name
    keys = set(read_metrics(run)[0])
    assert {"train/loss", "train/recon", "train/kl", "val/loss", "val/recon", "val/kl"} <= keys
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["model"]["init_args"]["latent_dim"] == 4


def test_resume_restores_the_step_and_the_capacity(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    common = [
        "fit",
        *SHAPES,
        *TINY,
        "--model.init_args.loss_type=B",
        "--model.init_args.capacity_max_iter=10",
        "--model.init_args.max_capacity=5",
    ]
    first = BetaVAECLI(args=[*common, "--trainer.max_epochs=1"])
    assert first.trainer.global_step == 2
    c_first = first.model.capacity()
    assert c_first == pytest.approx(1.0)

    resumed = BetaVAECLI(args=[*common, "--trainer.max_epochs=2", "--ckpt_path=last"])
    assert resumed.trainer.global_step == 4  # continued, not restarted
    assert resumed.model.capacity() == pytest.approx(2.0)
    rows = [r for r in read_metrics(tmp_path / "runs" / "test" / "version_1") if r.get("train/capacity")]
    # the resumed run's first logged step used C from where the first run stopped
    assert float(rows[0]["train/capacity"]) == pytest.approx(c_first)


def test_a_resume_that_lightning_will_cut_one_epoch_short_says_so(tmp_path, monkeypatch):
    """Bounded by max_steps and max_epochs and resumed from an epoch-end checkpoint, Lightning counts that epoch
    again: the warning says so, with the fix; bounded by max_epochs alone the resume is exact and silent."""
    monkeypatch.chdir(tmp_path)
    BetaVAECLI(args=["fit", *SHAPES, *TINY, "--trainer.max_steps=2"])
    with pytest.warns(UserWarning, match=r"counts that epoch again, so this fit trains 0 more epoch\(s\)") as record:
        both = BetaVAECLI(
            args=["fit", *SHAPES, *TINY, "--trainer.max_epochs=2", "--trainer.max_steps=4", "--ckpt_path=last"]
        )
    assert "--trainer.max_epochs 3" in str(next(w.message for w in record if "again" in str(w.message)))
    assert (
        both.trainer.global_step == 2
    )  # what the warning foretells (if Lightning fixes it, this fails: drop the warning)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        steps_only = BetaVAECLI(
            args=["fit", *SHAPES, *TINY, "--trainer.max_epochs=-1", "--trainer.max_steps=4", "--ckpt_path=last"]
        )
    assert steps_only.trainer.global_step == 4 and not [w for w in record if "again" in str(w.message)]


def test_the_epoch_count_warning_reads_the_checkpoints_loop_state():
    at_epoch_end = {
        "loops": {"fit_loop": {"epoch_progress": {"current": {"started": 3, "processed": 3, "completed": 2}}}}
    }
    mid_epoch = {"loops": {"fit_loop": {"epoch_progress": {"current": {"started": 3, "processed": 2, "completed": 2}}}}}
    assert "trains 1 more epoch(s) (and at most max_steps), not 2" in epoch_counted_again(at_epoch_end, 100, 5)
    assert epoch_counted_again(at_epoch_end, -1, 5) is None and epoch_counted_again(at_epoch_end, 100, -1) is None
    assert epoch_counted_again(mid_epoch, 100, 5) is None and epoch_counted_again({}, 100, 5) is None


def test_resume_last_without_a_checkpoint_starts_fresh(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cli = BetaVAECLI(args=["fit", *SHAPES, *TINY, "--ckpt_path=last"])
    assert cli.trainer.global_step == 2


def test_validate_test_and_predict_from_a_checkpoint(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    main(["fit", *SHAPES, *TINY])
    ckpt = next((tmp_path / "runs").rglob("last.ckpt"))
    for sub in ("validate", "test"):
        main([sub, *SHAPES, *TINY[3:], f"--ckpt_path={ckpt}"])
    cli = BetaVAECLI(args=["predict", *SHAPES, *TINY[3:], f"--ckpt_path={ckpt}"])
    model = BetaVAE.load_from_checkpoint(ckpt)
    assert model.in_channels == 1 and model.image_size == 16 and model.latent_dim == 4
    assert cli.trainer.predict_loop.predictions is not None


def test_non_finite_loss_stops_with_step_and_parts_and_keeps_the_last_checkpoint(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = [
        "fit",
        "--model=helpers.NaNAtStepBetaVAE",
        "--model.init_args.nan_at_step=3",
        "--model.init_args.encoder.init_args.hidden_channels=[8,16]",
        "--model.init_args.decoder.init_args.hidden_channels=[8,16]",
        "--model.init_args.latent_dim=4",
        *SHAPES_DATA,
        *TINY,
        "--trainer.max_epochs=5",
    ]
    with pytest.raises(NonFiniteLossError) as err:
        BetaVAECLI(args=args)
    message = str(err.value)
    assert "global step 3" in message and "epoch 1" in message
    assert "recon=nan" in message and "kl=" in message and "last.ckpt" in message
    ckpt_path = next((tmp_path / "runs").rglob("last.ckpt"))
    ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=False)
    assert ckpt["global_step"] == 2  # the end of the last good epoch
    assert all(torch.isfinite(v).all() for v in ckpt["state_dict"].values() if v.is_floating_point())
    from helpers import NaNAtStepBetaVAE

    NaNAtStepBetaVAE.load_from_checkpoint(ckpt_path)


def test_quickstart_config_writes_csv_and_an_offline_wandb_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
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
            "--trainer.limit_val_batches=1",
            "--data.init_args.batch_size=4",
            "--trainer.log_every_n_steps=1",
        ]
    )
    run = tmp_path / "runs" / "quickstart"
    assert (run / "version_0" / "metrics.csv").is_file()
    assert (run / "version_0" / "images" / "samples_epoch=000.png").is_file()
    flush_wandb()  # the WandbLogger's run stays open after fit: finish it and wait for the file
    offline = list((run / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(offline) == 1 and offline[0].stat().st_size > 0


@pytest.mark.slow
def test_quickstart_learns_and_disentangles(tmp_path, monkeypatch):
    """The README's main job, in full (about 5 minutes on 2 CPU cores): val/loss falls, the files appear,
    and the code disentangles x, y and size enough for MIG >= 0.2 (measured 0.30 for seeds 42, 1, 2)."""
    monkeypatch.chdir(tmp_path)
    main(["fit", "--config", "quickstart.yaml"])
    run = tmp_path / "runs" / "quickstart" / "version_0"
    val = [float(r["val/loss"]) for r in read_metrics(run) if r.get("val/loss")]
    assert len(val) == 25 and val[-1] < 0.7 * val[0]
    assert (run / "images" / "reconstructions_epoch=024.png").is_file()
    assert (run / "images" / "traversal_epoch=024.png").is_file()
    assert (run / "checkpoints" / "last.ckpt").is_file()
    model = BetaVAE.load_from_checkpoint(run / "checkpoints" / "last.ckpt", map_location="cpu").eval()
    data = ShapesDataModule(image_size=model.image_size, channels=1)  # the quickstart's data, its full factor grid
    codes, factors = sample_codes(data, model_representation(model), 10_000, np.random.default_rng(1234))
    assert mig(codes, factors) >= 0.2
