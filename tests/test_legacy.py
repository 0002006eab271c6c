"""Runs written before the redesign of issue 21 (networks and optimizers by class path) keep working.

The fixture ``tests/fixtures/legacy_run`` was written by the code before it (commit 41567f6): a tiny β-VAE on
16x16 shapes whose ``config.yaml`` and checkpoint hyperparameters name ``hidden_channels``, ``architecture``,
``lr``, ``weight_decay`` and ``scheduler_gamma: 0.9``. ``legacy_reference.json`` holds that code's numbers.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
import yaml
from conftest import TINY

from betavae.cli import main
from betavae.models import BetaVAE
from betavae.models.legacy import legacy_flags, upgrade_config, upgrade_model_args

FIXTURES = Path(__file__).resolve().parent / "fixtures"
REFERENCE = json.loads((FIXTURES / "legacy_reference.json").read_text())
#: the fixture's model, written the new way
NEW_STYLE = [
    "--model=betavae.models.BetaVAE",
    "--model.init_args.encoder.init_args.hidden_channels=[4,8]",
    "--model.init_args.decoder.init_args.hidden_channels=[4,8]",
    "--model.init_args.latent_dim=3",
    "--data=betavae.data.ShapesDataModule",
    "--data.init_args.num_images=16",
    "--data.init_args.image_size=16",
]


@pytest.fixture
def legacy_run(tmp_path: Path) -> Path:
    run = tmp_path / "legacy_run"
    shutil.copytree(FIXTURES / "legacy_run", run)
    return run


def test_old_hyperparameters_rebuild_the_same_network_with_the_same_outputs():
    ckpt = torch.load(FIXTURES / "legacy_run" / "checkpoints" / "last.ckpt", weights_only=True)
    old = {k: v for k, v in ckpt["hyper_parameters"].items() if not k.startswith("_")}
    new = upgrade_model_args("betavae.models.BetaVAE", old)
    assert not {
        "hidden_channels",
        "architecture",
        "decoder_kernel_size",
        "lr",
        "weight_decay",
        "scheduler_gamma",
    } & set(new)
    assert new["encoder"] == {"class_path": "betavae.nets.ConvEncoder", "init_args": {"hidden_channels": [4, 8]}}
    assert new["lr_scheduler"]["init_args"] == {"gamma": 0.9}
    model = BetaVAE(**new).eval()
    model.load_state_dict(ckpt["state_dict"])  # strict: the same weight names and shapes
    x = torch.randn(2, 1, 16, 16, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        torch.testing.assert_close(model.embed(x), torch.tensor(REFERENCE["fixture"]["embed"]), rtol=1e-6, atol=1e-6)
        assert float(model.reconstruct(x).double().sum()) == pytest.approx(REFERENCE["fixture"]["reconstruct_sum"])


def test_an_old_run_evaluates_from_its_own_config(legacy_run, monkeypatch):
    monkeypatch.chdir(legacy_run.parent)
    ckpt = legacy_run / "checkpoints" / "last.ckpt"
    with pytest.warns(UserWarning, match="removed in betavae's redesign"):
        main(
            [
                "evaluate",
                f"--ckpt_path={ckpt}",
                "--fid.feature_extractor=betavae.fid.PixelFeatures",
                "--fid.num_samples=8",
                "--fid.kid_subset_size=4",
                "--fid.kid_subsets=2",
                "--disentanglement_preset=none",
            ]
        )
    result = json.loads((legacy_run / "evaluation" / "last.json").read_text())
    assert result["model"] == "BetaVAE" and result["beta"] == 4.0 and result["n"] == 4
    assert result["psnr"] is not None and result["fid"] is not None


def test_an_old_checkpoint_resumes_with_its_optimizer_and_schedule(legacy_run, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    ckpt = legacy_run / "checkpoints" / "last.ckpt"
    from betavae.cli import BetaVAECLI

    cli = BetaVAECLI(args=["fit", *NEW_STYLE, *TINY, "--trainer.max_epochs=2", f"--ckpt_path={ckpt}"])
    assert cli.trainer.global_step == 4  # 2 steps in the old run, 2 more here
    optimizer = cli.trainer.optimizers[0]
    assert isinstance(optimizer, torch.optim.Adam)
    assert {int(s["step"]) for s in optimizer.state.values()} == {4}  # Adam's state restored, then 2 updates
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.005 * 0.9**2)  # the old run's scheduler_gamma 0.9


def test_old_config_files_are_read_with_a_warning_and_old_flags_say_what_to_write(tmp_path, monkeypatch, capsys):
    config = yaml.safe_load((FIXTURES / "legacy_run" / "config.yaml").read_text())
    upgraded, found = upgrade_config(config)
    assert found == ["architecture", "hidden_channels", "decoder_kernel_size", "lr", "weight_decay", "scheduler_gamma"]
    assert upgraded["model"]["init_args"]["optimizer"] == {
        "class_path": "torch.optim.Adam",
        "init_args": {"lr": 0.005, "weight_decay": 0.0},
    }
    assert legacy_flags(["--model.init_args.lr=0.1", "--model.scheduler_gamma", "0.9", "--model.init_args.beta=2"]) == [
        ("--model.init_args.lr", "--model.init_args.optimizer.init_args.lr"),
        ("--model.scheduler_gamma", "--model.init_args.lr_scheduler: {class_path: torch.optim.lr_scheduler."
         "ExponentialLR, init_args: {gamma: ...}} (null for a constant rate)"),
    ]  # fmt: skip
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit):
        main(["fit", *NEW_STYLE, *TINY, "--model.init_args.hidden_channels=[8,16]"])
    err = capsys.readouterr().err
    assert "--model.init_args.hidden_channels was removed" in err
    assert "encoder.init_args.hidden_channels and decoder.init_args.hidden_channels" in err


BURGESS = {"hidden_channels": [16, 16, 32, 32]}
RMSPROP = {"class_path": "torch.optim.RMSprop", "init_args": {"lr": 1e-3, "alpha": 0.9, "eps": 1e-7}}
FACTOR_DISC = {"class_path": "torch.optim.Adam", "init_args": {"lr": 2e-4, "betas": [0.5, 0.9]}}


@pytest.mark.parametrize(
    ("class_path", "old", "new"),
    [
        (
            "betavae.models.BetaVAE",
            {"architecture": "burgess", **BURGESS},
            {
                "encoder": {"class_path": "betavae.nets.BurgessEncoder", "init_args": BURGESS},
                "decoder": {"class_path": "betavae.nets.BurgessDecoder", "init_args": BURGESS},
            },
        ),
        (
            "betavae.models.FactorVAE",
            {"discriminator_lr": 2e-4, "scheduler_gamma": None},
            {"lr_scheduler": None, "discriminator_optimizer": FACTOR_DISC},
        ),
        (
            "betavae.models.DCGAN",
            {"optimizer": "rmsprop", "lr": 1e-3},
            {"generator_optimizer": RMSPROP, "discriminator_optimizer": RMSPROP},
        ),
    ],
)
def test_each_removed_argument_has_its_replacement(class_path, old, new):
    assert upgrade_model_args(class_path, old) == new


def test_no_shipped_config_names_a_removed_argument():
    configs = sorted((FIXTURES.parents[1] / "configs").glob("*.yaml"))
    found = {c.name: upgrade_config(yaml.safe_load(c.read_text()) or {})[1] for c in configs}
    assert len(found) >= 40 and not any(found.values()), {k: v for k, v in found.items() if v}
