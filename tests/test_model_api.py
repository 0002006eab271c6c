import pytest
import torch
from conftest import conv_nets

from betavae.data import ShapesDataModule
from betavae.errors import ConfigError
from betavae.models import BetaVAE, DiagonalGaussian
from betavae.normalization import imagenet_stats


def test_public_api_shapes_and_determinism():
    model = BetaVAE(in_channels=3, image_size=32, **conv_nets(8, 16, 32), latent_dim=6).eval()
    x = torch.randn(5, 3, 32, 32)
    q = model.encode(x)
    assert isinstance(q, DiagonalGaussian) and q.mean.shape == q.logvar.shape == (5, 6)
    assert model.decode(q.mode()).shape == x.shape
    torch.testing.assert_close(model.reconstruct(x), model.decode(q.mean))
    torch.testing.assert_close(model.reconstruct(x), model.reconstruct(x))
    s1 = model.sample(4, generator=torch.Generator().manual_seed(3))
    s2 = model.sample(4, generator=torch.Generator().manual_seed(3))
    assert s1.shape == (4, 3, 32, 32)
    torch.testing.assert_close(s1, s2)
    x_hat, posterior = model(x, sample_posterior=False)
    torch.testing.assert_close(x_hat, model.reconstruct(x))


def test_normalize_denormalize_round_trip_through_the_data_and_the_model():
    for channels in (1, 3):
        data = ShapesDataModule(num_images=4, image_size=16, channels=channels)
        mean, std = imagenet_stats(channels)
        assert data.mean == mean and data.std == std
        model = BetaVAE(in_channels=channels, image_size=16, **conv_nets(8), mean=data.mean, std=data.std)
        pixels = torch.randint(0, 256, (2, channels, 16, 16), dtype=torch.uint8)
        normalized = data.prepare_batch({"image": pixels})["image"]
        # the data is normalized: for ImageNet stats, black maps far below 0 and white above 1
        assert normalized.min() < -1.5 and normalized.max() > 2.0
        torch.testing.assert_close(model.to_pixels(normalized), pixels.float() / 255, atol=1e-6, rtol=0)
        torch.testing.assert_close(model.normalize(pixels.float() / 255), normalized, atol=1e-5, rtol=0)


def test_one_channel_rule_is_the_luma_combination_of_imagenet_stats():
    (m,), (s,) = imagenet_stats(1)
    assert abs(m - (0.299 * 0.485 + 0.587 * 0.456 + 0.114 * 0.406)) < 1e-4
    assert abs(s - (0.299 * 0.229 + 0.587 * 0.224 + 0.114 * 0.225)) < 1e-4


def test_to_pixels_clamps_model_outputs_into_the_unit_range():
    model = BetaVAE(in_channels=3, image_size=32, **conv_nets(8, 16))
    out = model.to_pixels(torch.randn(2, 3, 32, 32) * 10)
    assert out.min() >= 0 and out.max() <= 1


SMALL = {"in_channels": 1, "image_size": 16, **conv_nets(8, 16), "latent_dim": 4}


@pytest.mark.parametrize(
    ("make", "name"),
    [
        (lambda: BetaVAE(beta=-1, **SMALL), "beta"),
        (lambda: BetaVAE(kld_weight=-0.1, **SMALL), "kld_weight"),
        (lambda: BetaVAE(loss_type="B", gamma=-5, **SMALL), "gamma"),
    ],
)
def test_negative_loss_weights_are_refused_by_name(make, name):
    with pytest.raises(ConfigError, match=f"{name} must be >= 0"):
        make()


def test_the_conditional_vae_passes_its_condition_size_explicitly():
    from betavae.models import ConditionalVAE

    model = ConditionalVAE(num_classes=4, **SMALL)
    assert model.encoder.blocks[0][0].in_channels == 1 + 4 and model.hparams.num_classes == 4
    assert model.decoder.fc.in_features == model.latent_dim + 4
