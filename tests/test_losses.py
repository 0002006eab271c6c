from unittest.mock import PropertyMock, patch

import pytest
import torch
from conftest import conv_nets
from torch.distributions import Normal, kl_divergence

from betavae.models import VAE, BetaVAE


def tiny(cls=BetaVAE, **kwargs):
    torch.manual_seed(0)
    return cls(in_channels=3, image_size=16, **conv_nets(8, 16), latent_dim=5, **kwargs)


def reference_terms(model, x):
    """Recon (per-pixel mean MSE) and KL (sum over dims, batch mean) computed independently."""
    torch.manual_seed(123)
    x_hat, q = model(x)
    recon = ((x_hat - x) ** 2).sum() / x.numel()
    kl = kl_divergence(Normal(q.mean, q.std), Normal(0.0, 1.0)).sum(dim=1).mean()
    return recon, kl


def parts_of(model, x):
    torch.manual_seed(123)  # the same ε as reference_terms
    return model.loss_parts({"image": x})


@pytest.fixture
def batch():
    return torch.randn(4, 3, 16, 16, generator=torch.Generator().manual_seed(1))


def test_vae_loss_is_recon_plus_weighted_kl(batch):
    model = tiny(VAE, kld_weight=0.01)
    recon, kl = reference_terms(model, batch)
    parts = parts_of(model, batch)
    torch.testing.assert_close(parts["recon"], recon)
    torch.testing.assert_close(parts["kl"], kl)
    torch.testing.assert_close(parts["loss"], recon + 0.01 * kl)


def test_higgins_loss_scales_kl_by_beta_times_kld_weight(batch):
    model = tiny(beta=10.0, kld_weight=0.0025, loss_type="H")
    recon, kl = reference_terms(model, batch)
    torch.testing.assert_close(parts_of(model, batch)["loss"], recon + 10.0 * 0.0025 * kl)


@pytest.mark.parametrize("step", [0, 250, 1000, 5000])
def test_burgess_loss_uses_the_capacity_at_the_global_step(batch, step):
    model = tiny(loss_type="B", gamma=1000.0, max_capacity=25.0, capacity_max_iter=1000, kld_weight=0.0025)
    expected_c = min(25.0, 25.0 * step / 1000)
    with patch.object(BetaVAE, "global_step", new_callable=PropertyMock, return_value=step):
        recon, kl = reference_terms(model, batch)
        parts = parts_of(model, batch)
        assert model.capacity() == pytest.approx(expected_c)
    torch.testing.assert_close(parts["capacity"], torch.tensor(expected_c))
    torch.testing.assert_close(parts["loss"], recon + 1000.0 * 0.0025 * (kl - expected_c).abs())


def test_capacity_schedule_is_linear_then_flat():
    model = tiny(loss_type="B", max_capacity=20.0, capacity_max_iter=400)
    # C = 20 nats reached at step 400, linearly from 0: 0.05 nats per step, by hand
    expected = {0: 0.0, 1: 0.05, 50: 2.5, 100: 5.0, 200: 10.0, 399: 19.95, 400: 20.0, 401: 20.0, 1000: 20.0}
    for step, nats in expected.items():
        assert model.capacity(step) == pytest.approx(nats, abs=1e-12), step


def test_loss_defaults_are_the_studys():
    model = BetaVAE()
    assert model.hparams.kld_weight == 0.0025 and model.latent_dim == 128
    opt = model.configure_optimizers()
    assert isinstance(opt["optimizer"], torch.optim.Adam) and opt["optimizer"].defaults["lr"] == 0.005
    assert isinstance(opt["lr_scheduler"]["scheduler"], torch.optim.lr_scheduler.ExponentialLR)
    assert opt["lr_scheduler"]["interval"] == "epoch" and opt["lr_scheduler"]["scheduler"].gamma == 0.95
