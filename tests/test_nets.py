from pathlib import Path

import pytest
import torch
import yaml
from conftest import burgess_nets, conv_nets
from torch import nn

from betavae.models import VAE, BetaVAE
from betavae.models.vae import image_noise
from betavae.nets import ConvDecoder, ConvEncoder


def antixk_betavae(in_channels: int = 3, latent_dim: int = 128) -> nn.ModuleDict:
    """The reference architecture, transcribed from AntixK PyTorch-VAE models/beta_vae.py (64x64 only)."""
    hidden = [32, 64, 128, 256, 512]
    enc, c = [], in_channels
    for h in hidden:
        enc.append(nn.Sequential(nn.Conv2d(c, h, 3, 2, 1), nn.BatchNorm2d(h), nn.LeakyReLU()))
        c = h
    rev = hidden[::-1]
    dec = [
        nn.Sequential(
            nn.ConvTranspose2d(rev[i], rev[i + 1], 3, 2, 1, output_padding=1),
            nn.BatchNorm2d(rev[i + 1]),
            nn.LeakyReLU(),
        )
        for i in range(len(rev) - 1)
    ]
    final = nn.Sequential(
        nn.ConvTranspose2d(32, 32, 3, 2, 1, output_padding=1),
        nn.BatchNorm2d(32),
        nn.LeakyReLU(),
        nn.Conv2d(32, 3, 3, padding=1),
        nn.Tanh(),
    )
    return nn.ModuleDict(
        {
            "encoder": nn.Sequential(*enc),
            "fc_mu": nn.Linear(512 * 4, latent_dim),
            "fc_var": nn.Linear(512 * 4, latent_dim),
            "decoder_input": nn.Linear(latent_dim, 512 * 4),
            "decoder": nn.Sequential(*dec),
            "final_layer": final,
        }
    )


def test_study_architecture_matches_the_reference_layer_for_layer():
    ours = BetaVAE(in_channels=3, image_size=64, latent_dim=128)
    ref = antixk_betavae()
    shapes = lambda m: [tuple(p.shape) for p in m.parameters()]  # noqa: E731
    # same parameter tensors in the same order: encoder, μ, log σ², decoder input, decoder, final block
    ours_order = [ours.encoder, ours.fc_mu, ours.fc_logvar, ours.decoder.fc, ours.decoder.blocks, ours.decoder.final]
    ref_order = [ref["encoder"], ref["fc_mu"], ref["fc_var"], ref["decoder_input"], ref["decoder"], ref["final_layer"]]
    assert [shapes(m) for m in ours_order] == [shapes(m) for m in ref_order]
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in ref.parameters()) == 3_937_635
    # the only intended difference: no Tanh on the output (it cannot reach the normalized range)
    assert not any(isinstance(m, nn.Tanh) for m in ours.modules())
    convs = [m for m in ours.encoder.modules() if isinstance(m, nn.Conv2d)]
    assert all(c.kernel_size == (3, 3) and c.stride == (2, 2) and c.padding == (1, 1) for c in convs)
    ups = [m for m in ours.decoder.modules() if isinstance(m, nn.ConvTranspose2d)]
    assert len(ups) == 5 and all(u.output_padding == (1, 1) and u.stride == (2, 2) for u in ups)


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("size", [16, 32, 64, 128])
def test_encoder_decoder_shapes(size: int, channels: int):
    hidden = (8, 16, 32, 32) if size >= 16 else (8,)
    enc = ConvEncoder(channels, size, hidden)
    dec = ConvDecoder(6, channels, size, hidden)
    x = torch.randn(2, channels, size, size)
    h = enc(x)
    assert h.shape == (2, 32 * (size // 16) ** 2) == (2, enc.out_features)
    assert dec(torch.randn(2, 6)).shape == x.shape


@pytest.mark.parametrize("size", [16, 32, 64, 128])
def test_study_model_forward_backward_at_every_size(size: int):
    hidden = (32, 64, 128, 256, 512) if size >= 32 else (32, 64, 128)  # batik-style 3 blocks at 16 px
    model = BetaVAE(in_channels=1, image_size=size, **conv_nets(*hidden), latent_dim=8)
    x = torch.randn(3, 1, size, size)
    loss = model.loss_parts({"image": x})["loss"]
    loss.backward()
    assert all(p.grad is not None for p in model.parameters())


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"image_size": 60}, r"image_size=60 is not divisible by 2\*\*5=32"),
        ({"image_size": 16}, r"not divisible by 2\*\*5=32"),
        ({**conv_nets()}, "at least one block"),
        ({**conv_nets(32, 0)}, "positive"),
        ({"latent_dim": 0}, "latent_dim"),
        ({"in_channels": 1, "mean": (0.5, 0.5, 0.5), "std": (0.2, 0.2, 0.2)}, "one value per channel"),
        ({"loss_type": "X"}, "loss_type"),
    ],
)
def test_impossible_models_fail_at_construction_with_a_reason(kwargs, message):
    with pytest.raises(ValueError, match=message):
        BetaVAE(**kwargs)


def disentanglement_lib_nets(latent_dim: int = 10, channels: int = 1, kernel34: int = 2) -> nn.ModuleDict:
    """disentanglement_lib's conv_encoder / deconv_decoder at 64x64 (methods/shared/architectures.py),
    transcribed layer by layer; ``kernel34`` is the kernel of its 3rd and 4th convolution (2 there)."""
    pad = (kernel34 - 2) // 2  # TF "same" padding at stride 2 on even sizes
    encoder = nn.Sequential(
        nn.Conv2d(channels, 32, 4, 2, 1),
        nn.Conv2d(32, 32, 4, 2, 1),
        nn.Conv2d(32, 64, kernel34, 2, pad),
        nn.Conv2d(64, 64, kernel34, 2, pad),
        nn.Linear(64 * 4 * 4, 256),
    )
    heads = nn.Sequential(nn.Linear(256, latent_dim), nn.Linear(256, latent_dim))
    decoder = nn.Sequential(
        nn.Linear(latent_dim, 256),
        nn.Linear(256, 64 * 4 * 4),
        nn.ConvTranspose2d(64, 64, 4, 2, 1),
        nn.ConvTranspose2d(64, 32, 4, 2, 1),
        nn.ConvTranspose2d(32, 32, 4, 2, 1),
        nn.ConvTranspose2d(32, channels, 4, 2, 1),
    )
    return nn.ModuleDict({"encoder": encoder, "heads": heads, "decoder": decoder})


def test_burgess_architecture_matches_disentanglement_lib_layer_for_layer():
    ours = BetaVAE(in_channels=1, image_size=64, latent_dim=10, **burgess_nets(32, 32, 64, 64))
    ref = disentanglement_lib_nets(kernel34=4)  # the one stated difference: 4x4 kernels throughout (Burgess et al.)
    x = torch.randn(2, 1, 64, 64)  # both kernels give the same 4x4 bottleneck
    assert disentanglement_lib_nets()["encoder"][:4](x).shape == ours.encoder.convs(x).shape == (2, 64, 4, 4)
    shapes = lambda m: [tuple(p.shape) for p in m.parameters()]  # noqa: E731
    assert shapes(ours.encoder) == shapes(ref["encoder"])
    assert shapes(ours.fc_mu) + shapes(ours.fc_logvar) == shapes(ref["heads"])
    assert shapes(ours.decoder) == shapes(ref["decoder"])
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in ref.parameters()) == 764_245
    assert not any(isinstance(m, nn.BatchNorm2d) for m in ours.modules())
    # ReLU after every layer but the decoder's last: its output is the logits / the linear image
    assert isinstance(list(ours.decoder.modules())[-1], nn.ConvTranspose2d)
    relus = sum(isinstance(m, nn.ReLU) for m in ours.modules())
    assert relus == 5 + 2 + 3  # encoder convs + fc, decoder fcs, decoder convs but the last


@pytest.mark.parametrize(("size", "hidden"), [(16, (8, 8)), (32, (16, 16, 32, 32)), (64, (16, 16, 32, 32))])
@pytest.mark.parametrize("channels", [1, 3])
def test_burgess_model_forward_backward(size, hidden, channels):
    torch.manual_seed(0)
    model = BetaVAE(
        in_channels=channels, image_size=size, latent_dim=4, **burgess_nets(*hidden),
        likelihood="bce", reduction="sum", kld_weight=1.0,
    )  # fmt: skip
    x = model.normalize(torch.rand(3, channels, size, size))
    assert model.encode(x).mean.shape == (3, 4) and model.reconstruct(x).shape == x.shape
    assert model.sample(2).shape == (2, channels, size, size)
    model.loss_parts({"image": x})["loss"].backward()
    assert all(p.grad is not None for p in model.parameters())


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"encoder": {"class_path": "torch.nn.Identity"}}, "must have an int attribute out_features"),
        ({"encoder": "resnet"}, "encoder must be a class path"),
        ({"image_size": 40, **burgess_nets(8, 8, 8, 8)}, "not divisible by 2\\*\\*4"),
        ({"image_size": 32, **burgess_nets(8, 0)}, "positive"),
    ],
)
def test_burgess_architecture_fails_at_construction_with_a_reason(kwargs, message):
    with pytest.raises(ValueError, match=message):
        BetaVAE(in_channels=1, **kwargs)


def foster_celeba_vae() -> nn.ModuleDict:
    """The textbook's CelebA VAE (Foster, Generative Deep Learning, 2nd ed., ch. 3) in PyTorch layers, 32x32x3,
    latent 200, with the issue's k4 s2 p1 transposed convolutions (and without the BN + LeakyReLU the book puts
    after the decoder's dense layer)."""
    enc, c = [], 3
    for _ in range(4):
        enc += [nn.Conv2d(c, 128, 3, 2, 1), nn.BatchNorm2d(128), nn.LeakyReLU()]
        c = 128
    dec = []
    for _ in range(4):
        dec += [nn.ConvTranspose2d(128, 128, 4, 2, 1), nn.BatchNorm2d(128), nn.LeakyReLU()]
    return nn.ModuleDict(
        {
            "encoder": nn.Sequential(*enc),
            "z_mean": nn.Linear(512, 200),
            "z_log_var": nn.Linear(512, 200),
            "decoder_input": nn.Linear(200, 512),
            "decoder": nn.Sequential(*dec, nn.Conv2d(128, 3, 3, padding=1), nn.Sigmoid()),
        }
    )


def test_textbook_celeba_vae_config_builds_the_books_model_and_loss():
    config = yaml.safe_load((Path(__file__).resolve().parents[1] / "configs" / "vae_celeba_textbook.yaml").read_text())
    data = config["data"]["init_args"]
    args = {k: v for k, v in config["model"]["init_args"].items()}
    model = VAE(**args, in_channels=3, image_size=data["image_size"], mean=data["mean"], std=data["std"])
    ref = foster_celeba_vae()
    shapes = lambda m: [tuple(p.shape) for p in m.parameters()]  # noqa: E731
    ours = [model.encoder, model.fc_mu, model.fc_logvar, model.decoder.fc, model.decoder.blocks, model.decoder.final]
    assert [s for m in ours for s in shapes(m)] == shapes(ref)
    assert sum(p.numel() for p in model.parameters()) == 1_809_043
    ups = [m for m in model.decoder.modules() if isinstance(m, nn.ConvTranspose2d)]
    assert [(u.kernel_size, u.stride, u.padding, u.output_padding) for u in ups] == [
        ((4, 4), (2, 2), (1, 1), (0, 0))
    ] * 4
    # the book's loss, 2000 · MSE(pixels) + KL, is 2000 times ours: the data stay in [0, 1] (mean 0, std 1)
    model.eval()
    pixels = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    batch = {"image": model.normalize(pixels), "index": torch.arange(4)}
    with torch.no_grad():
        parts = model.loss_parts(batch)
        posterior = model.encode(batch["image"])
        z = posterior.mean + posterior.std * image_noise(batch, posterior.mean)
        mse = (torch.sigmoid(model.decoder(z)) - pixels).pow(2).mean()  # Keras' MSE, averaged over everything
    kl = (-0.5 * (1 + posterior.logvar - posterior.mean**2 - posterior.logvar.exp())).sum(1).mean()
    torch.testing.assert_close(2000 * parts["loss"], 2000 * mse + kl)
