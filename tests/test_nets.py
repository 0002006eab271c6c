import pytest
import torch
from torch import nn

from betavae.models import BetaVAE
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
    model = BetaVAE(in_channels=1, image_size=size, hidden_channels=hidden, latent_dim=8)
    x = torch.randn(3, 1, size, size)
    loss = model.loss_parts({"image": x})["loss"]
    loss.backward()
    assert all(p.grad is not None for p in model.parameters())


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"image_size": 60}, r"image_size=60 is not divisible by 2\*\*5=32"),
        ({"image_size": 16}, r"not divisible by 2\*\*5=32"),
        ({"hidden_channels": ()}, "at least one block"),
        ({"hidden_channels": (32, 0)}, "positive"),
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
    ours = BetaVAE(
        in_channels=1, image_size=64, latent_dim=10, architecture="burgess", hidden_channels=(32, 32, 64, 64)
    )
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
        in_channels=channels, image_size=size, latent_dim=4, architecture="burgess", hidden_channels=hidden,
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
        ({"architecture": "resnet"}, r"architecture must be one of \('study', 'burgess'\), got 'resnet'"),
        ({"architecture": "burgess", "image_size": 40, "hidden_channels": (8, 8, 8, 8)}, "not divisible by 2\\*\\*4"),
        ({"architecture": "burgess", "image_size": 32, "hidden_channels": (8, 0)}, "positive"),
    ],
)
def test_burgess_architecture_fails_at_construction_with_a_reason(kwargs, message):
    with pytest.raises(ValueError, match=message):
        BetaVAE(in_channels=1, **kwargs)
