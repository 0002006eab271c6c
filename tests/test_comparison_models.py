"""The models β-VAE is compared against: β-TCVAE, FactorVAE, DIP-VAE.

Estimators against independent references (scipy, numpy, brute force over a whole synthetic dataset),
the losses as the papers write them, FactorVAE's manual optimization, and every model through the CLI
with the callbacks, resume and the W&B comparison keys.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path
from unittest.mock import patch

import numpy as np
import pytest
import torch
from conftest import conv_nets
from scipy.special import logsumexp
from scipy.stats import norm

from betavae.cli import BetaVAECLI
from betavae.models import DIPVAE, VAE, BetaTCVAE, DiagonalGaussian, FactorVAE, NonFiniteLossError
from betavae.models.estimators import (
    covariance,
    dip_penalties,
    kl_decomposition,
    log_density_matrix,
    mss_log_weights,
    mws_log_weights,
    permute_dims,
)
from betavae.models.vae import image_noise

NET = {"in_channels": 1, "image_size": 16, **conv_nets(8, 16), "latent_dim": 4}
SMALL_DISCRIMINATOR = (16, 16)


def seeded_posterior(n: int, d: int, seed: int, dtype=torch.float64) -> tuple[DiagonalGaussian, torch.Tensor]:
    """n posteriors with μ ~ N(0, 1), σ in about [0.47, 0.61], and one code drawn from each."""
    g = torch.Generator().manual_seed(seed)
    mean = torch.randn(n, d, generator=g, dtype=dtype)
    q = DiagonalGaussian(mean, -1.5 + 0.5 * torch.rand(n, d, generator=g, dtype=dtype))
    return q, q.sample(g)


def images(batch_size: int = 6, seed: int = 1) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {"image": torch.randn(batch_size, 1, 16, 16, generator=g), "index": torch.arange(batch_size)}


# ---------------------------------------------------------------- β-TCVAE's estimator
def reference_decomposition(z: np.ndarray, mu: np.ndarray, logvar: np.ndarray, n: int, sampling: str):
    """Chen et al.'s MI, TC, dimension-wise KL with scipy densities, one code at a time."""
    b, d = z.shape
    sd = np.exp(0.5 * logvar)
    m = b - 1
    weights = np.full((b, b), 1.0 / (n * b))
    if sampling == "mss":  # own image 1/N, the next one (N - M)/(N M), the other M - 1 images 1/M
        weights = np.full((b, b), 1.0 / m)
        for i in range(b):
            weights[i, i], weights[i, (i + 1) % b] = 1.0 / n, (n - m) / (n * m)
    mi = tc = dw = 0.0
    for i in range(b):
        log_q = np.array([[norm.logpdf(z[i, k], mu[j, k], sd[j, k]) for k in range(d)] for j in range(b)])  # (b, d)
        log_qz_x = log_q[i].sum()
        log_qz = logsumexp(log_q.sum(axis=1), b=weights[i])
        log_prod = sum(logsumexp(log_q[:, k], b=weights[i]) for k in range(d))
        log_pz = norm.logpdf(z[i]).sum()
        mi, tc, dw = mi + log_qz_x - log_qz, tc + log_qz - log_prod, dw + log_prod - log_pz
    return mi / b, tc / b, dw / b


@pytest.mark.parametrize("sampling", ["mws", "mss"])
def test_kl_decomposition_matches_a_scipy_reference(sampling):
    q, z = seeded_posterior(6, 3, seed=0)
    parts = kl_decomposition(z, q, dataset_size=50, sampling=sampling)
    expected = reference_decomposition(z.numpy(), q.mean.numpy(), q.logvar.numpy(), 50, sampling)
    for key, value in zip(("mi", "tc", "dw_kl"), expected, strict=True):
        assert parts[key].item() == pytest.approx(value, rel=1e-9, abs=1e-9), key


def test_mss_estimates_the_aggregate_density_without_bias_and_mws_does_not():
    """Over random batches holding the code's own image and M others, Σ_j w_j q(z | x_j) averages to q(z)."""
    n, b, draws = 40, 8, 20_000
    q, z = seeded_posterior(n, 2, seed=3)
    target = z[0]  # a code of image 0
    log_q = q.log_prob_per_dim(target.expand(n, 2)).sum(dim=1)  # (N,): log q(z* | x_n)
    exact = log_q.exp().mean()
    g = torch.Generator().manual_seed(4)
    others = torch.rand(draws, n - 1, generator=g).argsort(dim=1)[:, : b - 1] + 1  # M distinct images, not 0
    batches = torch.cat([torch.zeros(draws, 1, dtype=torch.long), others], dim=1)  # (R, B), own image first
    for weights, unbiased in ((mss_log_weights(b, n)[0].exp(), True), (mws_log_weights(b, n)[0].exp(), False)):
        estimates = (weights * log_q[batches].exp()).sum(dim=1)  # (R,)
        error = (estimates.mean() - exact).abs()
        standard_error = estimates.std() / math.sqrt(draws)
        assert (error < 4 * standard_error) == unbiased
    assert torch.allclose(mss_log_weights(b, n).exp().sum(dim=1), torch.ones(b, dtype=torch.float64))


def synthetic_codes(correlated: bool, n: int = 2000, d: int = 4) -> DiagonalGaussian:
    """A dataset's posteriors: μ with independent N(0, 1) dimensions, or all near one shared N(0, 1); σ = 0.3."""
    g = torch.Generator().manual_seed(1)
    mean = torch.randn(n, 1, generator=g).repeat(1, d) + 0.05 * torch.randn(n, d, generator=g)
    if not correlated:
        mean = torch.randn(n, d, generator=g)
    return DiagonalGaussian(mean, torch.full((n, d), 2 * math.log(0.3)))


def brute_force_tc(data: DiagonalGaussian, draws: int = 2000) -> float:
    """E_q(z)[log q(z) − Σ_d log q(z_d)] with q(z) summed over every image of the dataset."""
    g = torch.Generator().manual_seed(2)
    pick = torch.randint(len(data.mean), (draws,), generator=g)
    z = DiagonalGaussian(data.mean[pick], data.logvar[pick]).sample(g)
    log_q = log_density_matrix(z, data)  # (draws, N, D)
    n = math.log(len(data.mean))
    log_qz = torch.logsumexp(log_q.sum(dim=2), dim=1) - n
    log_prod = (torch.logsumexp(log_q, dim=1) - n).sum(dim=1)
    return (log_qz - log_prod).mean().item()


def minibatch_tc(data: DiagonalGaussian, sampling: str, batch_size: int = 1024, repeats: int = 3) -> float:
    g = torch.Generator().manual_seed(5)
    values = []
    for _ in range(repeats):
        pick = torch.randperm(len(data.mean), generator=g)[:batch_size]
        q = DiagonalGaussian(data.mean[pick], data.logvar[pick])
        values.append(kl_decomposition(q.sample(g), q, len(data.mean), sampling)["tc"].item())
    return sum(values) / repeats


def test_total_correlation_against_brute_force_over_the_dataset():
    independent, correlated = synthetic_codes(False), synthetic_codes(True)
    exact_independent, exact_correlated = brute_force_tc(independent), brute_force_tc(correlated)
    assert 0 <= exact_independent < 0.3 and exact_correlated > 2.5  # the known answers: ~0 and clearly > 0
    # within 0.25 nats: about 4 standard errors of the brute-force average (0.05 nats for 2,000 draws)
    assert minibatch_tc(independent, "mss") == pytest.approx(exact_independent, abs=0.25)
    assert minibatch_tc(correlated, "mss") == pytest.approx(exact_correlated, abs=0.25)
    # MWS orders them too but reads high by about (D - 1) log N, as the BetaTCVAE docstring says
    mws_independent, mws_correlated = minibatch_tc(independent, "mws"), minibatch_tc(correlated, "mws")
    assert mws_correlated > mws_independent > exact_independent + 0.5 * 3 * math.log(2000)


@pytest.mark.parametrize("sampling", ["mws", "mss"])
def test_the_three_terms_sum_to_the_kl(sampling):
    q, z = seeded_posterior(1024, 3, seed=6)
    parts = kl_decomposition(z, q, dataset_size=5000, sampling=sampling)
    prior = torch.distributions.Normal(0.0, 1.0)
    per_code = q.log_prob_per_dim(z).sum(dim=1) - prior.log_prob(z).sum(dim=1)  # Monte Carlo KL per code
    total = parts["mi"] + parts["tc"] + parts["dw_kl"]
    assert total.item() == pytest.approx(per_code.mean().item(), abs=1e-9)  # exactly, for any estimator
    standard_error = per_code.std().item() / math.sqrt(len(z))
    assert total.item() == pytest.approx(q.kl().mean().item(), abs=4 * standard_error)  # in expectation


def test_estimators_refuse_impossible_sizes():
    q, z = seeded_posterior(4, 2, seed=0)
    with pytest.raises(ValueError, match="smaller than the batch"):
        kl_decomposition(z, q, dataset_size=3)
    with pytest.raises(ValueError, match="at least 2"):
        kl_decomposition(z[:1], DiagonalGaussian(q.mean[:1], q.logvar[:1]), dataset_size=10, sampling="mss")
    with pytest.raises(ValueError, match="'mws' or 'mss'"):
        kl_decomposition(z, q, dataset_size=10, sampling="iw")


# ---------------------------------------------------------------- DIP-VAE's and FactorVAE's statistics
def test_covariance_and_dip_penalties_match_numpy():
    x = torch.randn(37, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    cov = np.cov(x.numpy(), rowvar=False, bias=True)
    torch.testing.assert_close(covariance(x), torch.from_numpy(cov))
    off, diag = dip_penalties(torch.from_numpy(cov))
    assert off.item() == pytest.approx(sum(cov[i, j] ** 2 for i in range(5) for j in range(5) if i != j))
    assert diag.item() == pytest.approx(sum((cov[i, i] - 1) ** 2 for i in range(5)))


def test_permute_dims_shuffles_each_dimension_on_its_own():
    z = torch.arange(200.0).view(50, 4)  # z[r, d] = 4 r + d: every value names its row
    shuffled = permute_dims(z, torch.Generator().manual_seed(0))
    source_rows = (shuffled - torch.arange(4.0)) / 4  # (B, D): the row each entry came from
    for d in range(4):  # each column is a permutation of its own values
        assert torch.equal(source_rows[:, d].sort().values, torch.arange(50.0))
    assert not any(torch.equal(source_rows[:, 0], source_rows[:, d]) for d in range(1, 4))  # independently
    assert torch.equal(shuffled, permute_dims(z, torch.Generator().manual_seed(0)))  # seeded


# ---------------------------------------------------------------- the losses
def test_beta_tcvae_loss_weights_mi_tc_and_dimension_wise_kl():
    batch = images()
    model = BetaTCVAE(alpha=2.0, beta=5.0, gamma=0.5, dataset_size=100, kld_weight=0.5, **NET)
    torch.manual_seed(3)
    parts = model.loss_parts(batch)
    torch.manual_seed(3)
    posterior = model.encode(batch["image"])
    expected = kl_decomposition(posterior.sample(), posterior, 100, "mss")
    for key in ("mi", "tc", "dw_kl"):
        torch.testing.assert_close(parts[key], expected[key])
    regularizer = parts["kl"] + 1.0 * parts["mi"] + 4.0 * parts["tc"] - 0.5 * parts["dw_kl"]
    torch.testing.assert_close(parts["loss"], parts["recon"] + 0.5 * regularizer)


def test_beta_tcvae_with_unit_weights_is_the_vae():
    batch = images()
    model = BetaTCVAE(alpha=1.0, beta=1.0, gamma=1.0, dataset_size=100, kld_weight=0.3, **NET)
    vae = VAE(kld_weight=0.3, **NET)
    vae.load_state_dict(model.state_dict())
    torch.manual_seed(0)
    ours = model.loss_parts(batch)
    torch.manual_seed(0)
    torch.testing.assert_close(ours["loss"], vae.loss_parts(batch)["loss"])


def test_beta_tcvae_without_a_dataset_size_says_how_to_give_one():
    with pytest.raises(ValueError, match="dataset_size"):
        BetaTCVAE(**NET).loss_parts(images())
    with pytest.raises(ValueError, match="'mws'"):
        BetaTCVAE(sampling="stratified", **NET)


@pytest.mark.parametrize("dip_type", ["i", "ii"])
def test_dip_vae_penalizes_the_covariance_of_its_type(dip_type):
    model = DIPVAE(dip_type=dip_type, lambda_od=3.0, kld_weight=0.5, **NET)
    assert model.lambda_d == (30.0 if dip_type == "i" else 3.0)  # disentanglement_lib's defaults
    q, z = seeded_posterior(20, 4, seed=2, dtype=torch.float32)
    kl = q.kl().mean()
    parts = model.regularizer(kl, q, z, {})
    cov = np.cov(q.mean.numpy(), rowvar=False, bias=True)
    if dip_type == "ii":
        cov = cov + np.diag(np.exp(q.logvar.numpy()).mean(axis=0))
    off = (cov**2).sum() - (np.diag(cov) ** 2).sum()
    diag = ((np.diag(cov) - 1) ** 2).sum()
    assert parts["dip_off_diagonal"].item() == pytest.approx(off, rel=1e-5)
    assert parts["dip_diagonal"].item() == pytest.approx(diag, rel=1e-5)
    expected = 0.5 * (kl.item() + 3.0 * off + model.lambda_d * diag)
    assert parts["kl_term"].item() == pytest.approx(expected, rel=1e-5)
    with pytest.raises(ValueError, match="dip_type"):
        DIPVAE(dip_type="iii", **NET)


def test_factor_vae_gradients_go_where_they_belong():
    """One backward of loss + disc_loss: the VAE gets ∂loss only, the discriminator ∂disc_loss only."""
    model = FactorVAE(gamma=10.0, discriminator_hidden=SMALL_DISCRIMINATOR, **NET)
    batch = images()

    def grads(*keys: str) -> dict[str, torch.Tensor]:
        model.zero_grad(set_to_none=False)
        torch.manual_seed(0)
        parts = model.loss_parts(batch)
        sum(parts[k] for k in keys).backward()
        return {name: p.grad.clone() for name, p in model.named_parameters()}

    both, vae_only, disc_only = grads("loss", "disc_loss"), grads("loss"), grads("disc_loss")
    for name, grad in both.items():
        expected = disc_only[name] if name.startswith("discriminator.") else vae_only[name]
        torch.testing.assert_close(grad, expected, msg=name)
    assert any(g.abs().sum() > 0 for n, g in disc_only.items() if n.startswith("discriminator."))
    assert all(g.abs().sum() == 0 for n, g in vae_only.items() if n.startswith("discriminator."))
    assert vae_only["fc_mu.weight"].abs().sum() > 0 and disc_only["fc_mu.weight"].abs().sum() == 0


def test_factor_vae_tc_is_the_discriminators_log_odds():
    model = FactorVAE(gamma=7.0, discriminator_hidden=SMALL_DISCRIMINATOR, kld_weight=0.5, **NET).eval()
    batch = images()
    parts = model.loss_parts(batch)
    posterior = model.encode(batch["image"])
    z = posterior.sample(noise=image_noise(batch, posterior.mean))
    p = torch.sigmoid(model.discriminator(z))
    torch.testing.assert_close(parts["tc"], (p.log() - (1 - p).log()).mean(), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(parts["loss"], parts["recon"] + 0.5 * (parts["kl"] + 7.0 * parts["tc"]))
    assert 0.0 <= parts["disc_accuracy"].item() <= 1.0
    again = model.loss_parts(batch)  # validation: the same shuffle every time
    assert again["disc_loss"].item() == parts["disc_loss"].item()


# ---------------------------------------------------------------- through the CLI
TINY = [
    "--model.init_args.encoder.init_args.hidden_channels=[8,16]",
    "--model.init_args.decoder.init_args.hidden_channels=[8,16]",
    "--model.init_args.latent_dim=4",
    "--model.init_args.likelihood=bce",
    "--model.init_args.reduction=sum",
    "--model.init_args.kld_weight=1",
    "--data=betavae.data.ShapesDataModule",
    "--data.init_args.num_images=24",
    "--data.init_args.image_size=16",
    "--data.init_args.batch_size=4",
    "--trainer.max_epochs=1",
    "--trainer.log_every_n_steps=1",
    "--trainer.limit_train_batches=2",
    "--trainer.limit_val_batches=2",
    "--trainer.logger=lightning.pytorch.loggers.CSVLogger",
    "--trainer.logger.save_dir=runs",
    "--trainer.logger.name=test",
    "--trainer.enable_model_summary=false",
    "--progress_bar.refresh_rate=0",
    "--traversal.top_k=2",
]
FACTOR = ["--model=betavae.models.FactorVAE", "--model.init_args.discriminator_hidden=[16,16]"]
WANDB = [
    "--trainer.logger+=lightning.pytorch.loggers.WandbLogger",
    "--trainer.logger.save_dir=runs/test",
    "--trainer.logger.project=betavae-tests",
]
FID = [
    "--fid.every_n_epochs=1",
    "--fid.feature_extractor=betavae.fid.PixelFeatures",
    "--fid.num_samples=8",
    "--fid.batch_size=4",
    "--fid.kid_subset_size=4",
    "--fid.kid_subsets=2",
]
# each model: its arguments, the parts it logs, and the weights its hyperparameters (so W&B's config) carry
MODELS = {
    "beta_tcvae": (
        ["--model=betavae.models.BetaTCVAE"],
        ("mi", "tc", "dw_kl"),
        {"alpha": 1.0, "beta": 6.0, "gamma": 1.0, "sampling": "mss"},
    ),
    "factorvae": (
        [*FACTOR, *WANDB],
        ("tc", "disc_loss", "disc_accuracy"),
        {"gamma": 35.0},
    ),
    "dipvae_i": (
        ["--model=betavae.models.DIPVAE"],
        ("dip_off_diagonal", "dip_diagonal"),
        {"dip_type": "i", "lambda_od": 10.0, "lambda_d": None},  # None: 10·λ_od, model.lambda_d
    ),
    "dipvae_ii": (
        ["--model=betavae.models.DIPVAE", "--model.init_args.dip_type=ii", "--model.init_args.lambda_d=2"],
        ("dip_off_diagonal", "dip_diagonal"),
        {"dip_type": "ii", "lambda_od": 10.0, "lambda_d": 2.0},
    ),
}


def plain(value):
    """Tuples as lists, as YAML and W&B give them back."""
    return list(value) if isinstance(value, tuple) else value


def metrics(run: Path) -> list[dict[str, str]]:
    with (run / "metrics.csv").open() as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize("name", MODELS)
def test_each_model_trains_through_the_cli_with_every_callback(name, tmp_path, monkeypatch):
    """Two steps on 16 px shapes: every part logged (train and val), PSNR/SSIM/FID, traversal and grids,
    a loadable checkpoint, and the model's name and weights in the W&B run's config."""
    import wandb

    monkeypatch.chdir(tmp_path)
    args, parts, weights = MODELS[name]
    cli = BetaVAECLI(args=["fit", *args, *TINY, *FID])
    assert cli.trainer.global_step == 2  # one step per batch, FactorVAE included
    run = Path(cli.trainer.log_dir)
    rows = metrics(run)
    for stage in ("train", "val"):
        for key in ("loss", "recon", "kl", *parts):
            values = [float(r[f"{stage}/{key}"]) for r in rows if r.get(f"{stage}/{key}")]
            assert values and all(math.isfinite(v) for v in values), f"{stage}/{key}"
    scores = next(r for r in rows if r.get("val/psnr"))
    assert float(scores["val/ssim"]) > 0 and math.isfinite(float(scores["val/fid"]))
    for image in ("traversal_epoch=000.png", "reconstructions_epoch=000.png", "samples_epoch=000.png"):
        assert (run / "images" / image).is_file(), image
    model = type(cli.model).load_from_checkpoint(run / "checkpoints" / "last.ckpt")
    if name == "beta_tcvae":
        assert cli.model.hparams.dataset_size == model.hparams.dataset_size == 18  # 75 % of 24 images
    if name.startswith("dipvae"):
        assert cli.model.lambda_d == model.lambda_d == (100.0 if name == "dipvae_i" else 2.0)
    logged = dict(cli.model.hparams_initial)  # what Lightning gives every logger, W&B included
    assert all(plain(logged[k]) == plain(v) for k, v in weights.items()), logged
    wandb_loggers = [lg for lg in cli.trainer.loggers if lg.__class__.__name__ == "WandbLogger"]
    if wandb_loggers:
        config = dict(wandb_loggers[0].experiment.config)
        wandb.finish()
        assert config["variant"] == type(cli.model).__name__
        assert all(plain(config[k]) == plain(v) for k, v in weights.items()), config


def test_factor_vae_resumes_both_optimizers_the_scheduler_and_the_step(tmp_path, monkeypatch):
    """Also: gradient clipping goes through ``clip_gradients`` for each optimizer at every step."""
    monkeypatch.chdir(tmp_path)
    common = [
        "fit",
        *FACTOR,
        *TINY,
        "--model.init_args.lr_scheduler=torch.optim.lr_scheduler.ExponentialLR",
        "--model.init_args.lr_scheduler.gamma=0.5",
    ]
    calls = []
    real_clip = FactorVAE.clip_gradients

    def spy(self, optimizer, **kwargs):
        calls.append(kwargs)
        return real_clip(self, optimizer, **kwargs)

    with patch.object(FactorVAE, "clip_gradients", spy):
        first = BetaVAECLI(args=[*common, "--model.init_args.gradient_clip_val=0.5"])
    assert first.trainer.global_step == 2
    assert calls == [{"gradient_clip_val": 0.5, "gradient_clip_algorithm": "norm"}] * 4  # 2 optimizers × 2 steps
    ckpt = torch.load(next(Path("runs").rglob("last.ckpt")), map_location="cpu", weights_only=False)
    assert len(ckpt["optimizer_states"]) == 2 and len(ckpt["lr_schedulers"]) == 1

    resumed = BetaVAECLI(args=[*common, "--trainer.max_epochs=2", "--ckpt_path=last"])
    assert resumed.trainer.global_step == 4  # continued, not restarted
    vae_opt, disc_opt = resumed.trainer.optimizers
    for optimizer in (vae_opt, disc_opt):  # Adam's own step counts: 2 restored + 2 new updates each
        assert {int(s["step"]) for s in optimizer.state.values()} == {4}
    assert disc_opt.param_groups[0]["betas"] == (0.5, 0.9) and disc_opt.param_groups[0]["lr"] == 1e-4
    assert vae_opt.param_groups[0]["lr"] == pytest.approx(0.005 * 0.5**2)  # as BetaVAE: once per epoch, resumed


ORIGINAL_REGULARIZER = FactorVAE.regularizer


def nan_discriminator(self, *args):
    parts = ORIGINAL_REGULARIZER(self, *args)
    return {**parts, "disc_loss": parts["disc_loss"] * float("nan")}


def test_factor_vae_stops_on_a_non_finite_discriminator_loss(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    nan_regularizer = patch.object(FactorVAE, "regularizer", autospec=True, side_effect=nan_discriminator)
    with nan_regularizer, pytest.raises(NonFiniteLossError, match="disc_loss=nan"):
        BetaVAECLI(args=["fit", *FACTOR, *TINY])


@pytest.mark.slow
@pytest.mark.parametrize("model", ["FactorVAE", "BetaTCVAE"])
def test_ddp_on_two_processes(model, tmp_path):
    """Two gloo processes: FactorVAE's manual optimization trains under DDP with both optimizers in the
    checkpoint, global_step counts batches, β-TCVAE's N is the whole training set on each rank, and the
    per-image parts (recon, kl) the 2-process run logged equal a one-process validation of rank 0's
    checkpoint, so both ranks validated with the same weights and BatchNorm statistics."""
    import os
    import sys

    from helpers import run_process

    common = [
        f"--model=betavae.models.{model}",
        *[a for a in TINY if "limit_" not in a and "logger.name" not in a],
        "--data.init_args.num_images=64",  # 16 validation images = 2 ranks x 2 batches x 4
        "--trainer.accelerator=cpu",
        "--trainer.limit_train_batches=3",
        "--seed_everything=0",
    ]
    if model == "FactorVAE":
        common.append("--model.init_args.discriminator_hidden=[16,16]")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")])}
    fit = ["fit", *common, "--trainer.logger.name=ddp", "--trainer.strategy=ddp", "--trainer.devices=2"]
    run_process([sys.executable, "-m", "betavae", *fit], env, timeout=400, cwd=tmp_path)
    run = tmp_path / "runs" / "ddp" / "version_0"
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert ckpt["global_step"] == 3 and len(ckpt["optimizer_states"]) == (2 if model == "FactorVAE" else 1)
    if model == "BetaTCVAE":
        assert ckpt["hyper_parameters"]["dataset_size"] == 48  # 75 % of 64 images, not a rank's share
    ddp = next(r for r in metrics(run) if r.get("val/recon"))
    for key in MODELS["factorvae" if model == "FactorVAE" else "beta_tcvae"][1]:
        assert math.isfinite(float(ddp[f"val/{key}"])), key

    validate = ["validate", *common, "--trainer.logger.name=single", "--trainer.devices=1"]
    cli = BetaVAECLI(args=[*validate, f"--ckpt_path={run / 'checkpoints' / 'last.ckpt'}"])
    single = {k: float(v) for k, v in cli.trainer.callback_metrics.items()}
    for key in ("val/recon", "val/kl"):
        assert float(ddp[key]) == pytest.approx(single[key], rel=1e-5, abs=1e-6), key
