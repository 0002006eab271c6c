"""Optimizers and schedules by class path (``betavae.models.optim``): the defaults are the old code's to the
number, and every model, with one optimizer or two, takes another one from the command line and from YAML."""

from __future__ import annotations

import json
import shlex
from functools import partial
from pathlib import Path

import pytest
import torch
from conftest import SHAPES, SHAPES_DATA, TINY, bash_commands, conv_nets

from betavae.cli import BetaVAECLI
from betavae.errors import ConfigError
from betavae.models import DCGAN, BetaVAE, FactorVAE
from betavae.nets import ChapterDiscriminator, ChapterGenerator

REPO = Path(__file__).resolve().parents[1]
REFERENCE = json.loads((Path(__file__).resolve().parent / "fixtures" / "legacy_reference.json").read_text())
SMALL = {"in_channels": 1, "image_size": 16, "latent_dim": 3, **conv_nets(4, 8)}
RMSPROP = {"class_path": "torch.optim.RMSprop", "init_args": {"lr": 1e-3, "alpha": 0.9, "eps": 1e-7}}
CASES = {  # the old code's calls (tests/fixtures/make_legacy_reference.py), written the new way
    "BetaVAE": lambda: BetaVAE(**SMALL),
    "BetaVAE_no_schedule": lambda: BetaVAE(lr_scheduler=None, **SMALL),
    "FactorVAE": lambda: FactorVAE(discriminator_hidden=(8, 8), **SMALL),
    "FactorVAE_no_schedule": lambda: FactorVAE(discriminator_hidden=(8, 8), lr_scheduler=None, **SMALL),
    "DCGAN_adam": lambda: DCGAN(ChapterGenerator, ChapterDiscriminator, latent_dim=4, in_channels=1, image_size=16),
    "DCGAN_rmsprop": lambda: DCGAN(
        ChapterGenerator,
        ChapterDiscriminator,
        latent_dim=4,
        in_channels=1,
        image_size=16,
        generator_optimizer=RMSPROP,
        discriminator_optimizer=RMSPROP,
    ),
}


def optimizers_and_schedulers(conf) -> tuple[list, list]:
    if isinstance(conf, dict):
        return [conf["optimizer"]], [conf["lr_scheduler"]["scheduler"]]
    if isinstance(conf, tuple):
        return conf[0], [s["scheduler"] for s in conf[1]]
    return (conf, []) if isinstance(conf, list) else ([conf], [])


def plain_groups(optimizer: torch.optim.Optimizer) -> list[dict]:
    return [
        {k: list(v) if isinstance(v, tuple) else v for k, v in group.items() if k != "params"}
        for group in optimizer.param_groups
    ]


@pytest.mark.parametrize("case", list(CASES))
def test_default_optimizers_are_the_old_codes(case):
    torch.manual_seed(0)
    optimizers, schedulers = optimizers_and_schedulers(CASES[case]().configure_optimizers())
    expected = REFERENCE[case]
    assert [type(o).__name__ for o in optimizers] == expected["optimizers"]
    assert [plain_groups(o) for o in optimizers] == expected["param_groups"]
    assert [{"type": type(s).__name__, "gamma": s.gamma} for s in schedulers] == expected["schedulers"]


def test_default_training_steps_are_the_old_codes():
    """Three Adam steps and one epoch's schedule step of the default β-VAE, on the old code's seeds."""
    torch.manual_seed(0)
    model = BetaVAE(**SMALL).train()
    conf = model.configure_optimizers()
    optimizer, scheduler = conf["optimizer"], conf["lr_scheduler"]["scheduler"]
    x = torch.randn(4, 1, 16, 16, generator=torch.Generator().manual_seed(1))
    losses = []
    for _ in range(3):
        torch.manual_seed(2)
        loss = model.loss_parts({"image": x})["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    scheduler.step()
    expected = REFERENCE["BetaVAE_steps"]
    assert losses == pytest.approx(expected["losses"], rel=1e-6)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(expected["lr_after_epoch"]) == 0.005 * 0.95
    param_sum = float(sum(p.detach().double().sum() for p in model.parameters()))
    # Adam moves a parameter by about lr whatever its gradient's size, so a parameter whose gradient is float noise
    # (~1e-9) moves by ±0.005 with the noise's sign, which the thread count changes (1 thread: 8.39183, 2: 8.39126);
    # the losses above (1e-6) are the real check, this sum catches a wrong update rule or learning rate.
    assert param_sum == pytest.approx(expected["param_sum"], abs=2e-3)


def test_python_callers_pass_classes_partials_or_class_path_dicts():
    sgd = BetaVAE(optimizer=partial(torch.optim.SGD, lr=0.1, momentum=0.9), lr_scheduler=None, **SMALL)
    optimizer = sgd.configure_optimizers()
    assert isinstance(optimizer, torch.optim.SGD) and optimizer.defaults["momentum"] == 0.9
    plateau = {"class_path": "torch.optim.lr_scheduler.ReduceLROnPlateau", "init_args": {"factor": 0.5}}
    conf = BetaVAE(optimizer=torch.optim.AdamW, lr_scheduler=plateau, **SMALL).configure_optimizers()
    assert isinstance(conf["optimizer"], torch.optim.AdamW)
    assert conf["lr_scheduler"]["monitor"] == "val/loss" and conf["lr_scheduler"]["scheduler"].factor == 0.5
    with pytest.raises(ConfigError, match="optimizer must be a class path"):
        BetaVAE(optimizer=3, **SMALL).configure_optimizers()
    with pytest.raises(ConfigError, match="must build a torch.optim.Optimizer"):
        BetaVAE(optimizer=lambda params: object(), **SMALL).configure_optimizers()


def run(args: list[str]) -> BetaVAECLI:
    return BetaVAECLI(args=["fit", *args, *TINY])


def test_one_optimizer_model_takes_its_optimizer_and_schedule_from_the_command_line(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cli = run(
        [
            *SHAPES,
            "--model.init_args.optimizer=torch.optim.AdamW",
            "--model.init_args.optimizer.lr=3e-4",
            "--model.init_args.lr_scheduler=torch.optim.lr_scheduler.StepLR",
            "--model.init_args.lr_scheduler.step_size=1",
            "--model.init_args.lr_scheduler.gamma=0.5",
        ]
    )
    (optimizer,) = cli.trainer.optimizers
    assert isinstance(optimizer, torch.optim.AdamW)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(3e-4 * 0.5)  # after the one epoch's step
    assert isinstance(cli.trainer.lr_scheduler_configs[0].scheduler, torch.optim.lr_scheduler.StepLR)


@pytest.mark.slow  # a minute or more: the fast tier keeps to ~12 min on 2 cores; its parts are tested fast elsewhere
def test_two_optimizer_models_take_both_from_yaml(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    factor = tmp_path / "factor.yaml"
    factor.write_text(
        """
model:
  class_path: betavae.models.FactorVAE
  init_args:
    discriminator_hidden: [8, 8]
    optimizer:
      class_path: torch.optim.SGD
      init_args: {lr: 0.01, momentum: 0.5}
    lr_scheduler: null
    discriminator_optimizer:
      class_path: torch.optim.RMSprop
      init_args: {lr: 0.002}
"""
    )
    cli = run(["--config", str(factor), *SHAPES[1:]])
    vae_opt, disc_opt = cli.trainer.optimizers
    assert isinstance(vae_opt, torch.optim.SGD) and vae_opt.defaults["momentum"] == 0.5
    assert isinstance(disc_opt, torch.optim.RMSprop) and disc_opt.param_groups[0]["lr"] == 0.002
    assert not cli.trainer.lr_scheduler_configs

    gan = [
        "--model=betavae.models.DCGAN",
        "--model.init_args.generator=betavae.nets.ChapterGenerator",
        "--model.init_args.discriminator=betavae.nets.ChapterDiscriminator",
        "--model.init_args.latent_dim=4",
        "--model.init_args.discriminator_optimizer=torch.optim.SGD",
        "--model.init_args.discriminator_optimizer.lr=0.05",
        "--model.init_args.generator_optimizer.lr=1e-3",  # the default Adam, another rate
        "--model.init_args.lr_scheduler=torch.optim.lr_scheduler.ExponentialLR",
        "--model.init_args.lr_scheduler.gamma=0.5",
        *SHAPES_DATA,
    ]
    cli = run(gan)
    opt_d, opt_g = cli.trainer.optimizers
    assert isinstance(opt_d, torch.optim.SGD) and opt_d.param_groups[0]["lr"] == 0.05
    assert isinstance(opt_g, torch.optim.Adam) and opt_g.defaults["betas"] == (0.5, 0.999)
    assert opt_g.param_groups[0]["lr"] == pytest.approx(1e-3 * 0.5)  # stepped once, at the epoch's end


#: per config of docs/optimizers.md's commands: (optimizer class, the settings it must have) in the model's order
DOCUMENTED = {
    # the class changed on the study's default: its lr from the command line, weight decay 0 kept (not AdamW's 0.01)
    "celeba_beta10.yaml": [(torch.optim.AdamW, {"lr": 3e-4, "weight_decay": 0})],
    "quickstart.yaml": [(torch.optim.Adam, {"lr": 5e-4})],  # only init_args: the class stays Adam
    "shapes_factorvae.yaml": [  # the VAE's, then the discriminator's: Kim & Mnih's betas kept, the new rate
        (torch.optim.Adam, {}),
        (torch.optim.Adam, {"lr": 2e-4, "betas": (0.5, 0.9)}),
    ],
    "dcgan_celeba.yaml": [(torch.optim.SGD, {"lr": 0.05}), (torch.optim.Adam, {"lr": 2e-4, "betas": (0.5, 0.999)})],
}
NO_SCHEDULE = {"celeba_beta10.yaml", "quickstart.yaml", "shapes_factorvae.yaml", "dcgan_celeba.yaml"}


def test_the_documented_commands_build_the_optimizers_the_page_names(tmp_path, monkeypatch):
    """Each `fit` command of docs/optimizers.md, verbatim, parsed against its real config (instantiated, not
    run: the data is never read): the model's optimizers are the classes and rates the page says."""
    monkeypatch.chdir(tmp_path)
    commands = [c for c in bash_commands((REPO / "docs" / "optimizers.md").read_text()) if " fit " in c]
    assert len(commands) == len(DOCUMENTED)
    for command in commands:
        argv = shlex.split(command)
        assert argv[:4] == ["python", "-m", "betavae", "fit"] and argv[4] == "--config"
        cli = BetaVAECLI(args=argv[4:], run=False)
        optimizers, schedulers = optimizers_and_schedulers(cli.model.configure_optimizers())
        expected = DOCUMENTED[argv[5]]
        assert [type(o) for o in optimizers] == [cls for cls, _ in expected], command
        for optimizer, (_, settings) in zip(optimizers, expected, strict=True):
            for key, value in settings.items():
                assert optimizer.defaults[key] == pytest.approx(value), (command, key)
        assert (not schedulers) == (argv[5] in NO_SCHEDULE), command
