import pytest
import torch
from torch.distributions import Normal, kl_divergence

from betavae.models import DiagonalGaussian


def seeded_posterior(b: int = 16, d: int = 7, seed: int = 0) -> DiagonalGaussian:
    g = torch.Generator().manual_seed(seed)
    return DiagonalGaussian(torch.randn(b, d, generator=g) * 2, torch.randn(b, d, generator=g) * 1.5)


def test_kl_matches_torch_distributions():
    q = seeded_posterior()
    reference = kl_divergence(Normal(q.mean, q.std), Normal(torch.zeros_like(q.mean), torch.ones_like(q.mean)))
    torch.testing.assert_close(q.kl_per_dim(), reference, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(q.kl(), reference.sum(dim=1), rtol=1e-5, atol=1e-5)


def test_kl_is_zero_for_the_prior_and_positive_otherwise():
    prior = DiagonalGaussian(torch.zeros(3, 5), torch.zeros(3, 5))
    assert torch.equal(prior.kl(), torch.zeros(3))
    assert (seeded_posterior().kl() > 0).all()


def test_sample_is_reparameterised_and_has_the_right_moments():
    mean = torch.tensor([[1.0, -2.0]]).expand(200_000, 2).clone().requires_grad_()
    logvar = torch.log(torch.tensor([[0.25, 4.0]])).expand(200_000, 2).clone().requires_grad_()
    z = DiagonalGaussian(mean, logvar).sample(torch.Generator().manual_seed(0))
    torch.testing.assert_close(z.mean(0), torch.tensor([1.0, -2.0]), atol=0.02, rtol=0)
    torch.testing.assert_close(z.std(0), torch.tensor([0.5, 2.0]), atol=0.02, rtol=0)
    z.sum().backward()
    assert mean.grad is not None and logvar.grad is not None


def test_mode_is_the_mean_and_shapes_must_agree():
    q = seeded_posterior()
    assert q.mode() is q.mean
    with pytest.raises(ValueError, match="differ in shape"):
        DiagonalGaussian(torch.zeros(2, 3), torch.zeros(2, 4))


def test_log_prob_per_dim_matches_torch_distributions_and_broadcasts():
    q = seeded_posterior(b=5, d=3)
    z = torch.randn(5, 3, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(q.log_prob_per_dim(z), Normal(q.mean, q.std).log_prob(z), rtol=1e-5, atol=1e-5)
    every = DiagonalGaussian(q.mean.unsqueeze(0), q.logvar.unsqueeze(0)).log_prob_per_dim(z.unsqueeze(1))
    assert every.shape == (5, 5, 3)  # code i under image j's posterior
    torch.testing.assert_close(every[1, 3], Normal(q.mean[3], q.std[3]).log_prob(z[1]), rtol=1e-5, atol=1e-5)
