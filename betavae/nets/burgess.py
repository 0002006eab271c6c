"""The convolutional encoder and decoder of the disentanglement benchmarks (Burgess et al. 2018).

Burgess et al., "Understanding disentangling in β-VAE" (2018), appendix A.1: four Conv2d(k 4, stride 2)
layers of 32 channels, dense layers of 256 units, 10 latents, a transposed decoder. Locatello et al.,
"Challenging common assumptions in the unsupervised learning of disentangled representations"
(ICML 2019), disentanglement_lib ``methods/shared/architectures.py``: ``conv_encoder`` (channels 32, 32,
64, 64; dense 256) and ``deconv_decoder``. Here:

- encoder: Conv2d(k 4, stride 2, pad 1) → ReLU per block, flatten, Linear → ``fc_size`` (256) → ReLU;
  the VAE adds the μ and log σ² layers. ``hidden_channels=(32, 32, 64, 64)`` is disentanglement_lib's
  ``conv_encoder`` except that its last two convolutions have 2×2 kernels, here 4×4 like the first two
  and like Burgess et al.'s; one dense layer as in disentanglement_lib (Burgess et al. have two);
- decoder: disentanglement_lib's ``deconv_decoder``: Linear(latent → ``fc_size``) → ReLU → Linear(→
  channels × s × s) → ReLU, then ConvTranspose2d(k 4, stride 2, pad 1) → ReLU back through the channels
  in reverse, the last one to the image channels with a linear output (logits for ``likelihood: bce``).

No batch normalization, unlike the study's network (``betavae.nets.conv``). Any image size divisible by
``2 ** len(hidden_channels)`` works; the reference is 64×64 with 4 blocks.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from betavae.nets.checks import check_positive
from betavae.nets.conv import bottleneck_size

BURGESS_HIDDEN_CHANNELS = (32, 32, 64, 64)
BURGESS_FC_SIZE = 256


def _checked(name: str, values: Sequence[int]) -> tuple[int, ...]:
    """``values`` as a tuple of ints, each a positive integer (``check_positive``)."""
    check_positive(**{name: list(values)})
    return tuple(int(v) for v in values)


class BurgessEncoder(nn.Module):
    """Stride-2 Conv2d(k=4, p=1) → ReLU blocks, flattened, then Linear → ``fc_size`` → ReLU.

    Args:
        in_channels: Image channels.
        image_size: Height and width of the (square) input; a multiple of ``2 ** len(hidden_channels)``.
        hidden_channels: Output channels of each conv block (disentanglement_lib: 32, 32, 64, 64;
            Burgess et al.: 32, 32, 32, 32).
        fc_size: Width of the dense layer after the convolutions (256).
    """

    def __init__(
        self,
        in_channels: int,
        image_size: int,
        hidden_channels: Sequence[int] = BURGESS_HIDDEN_CHANNELS,
        fc_size: int = BURGESS_FC_SIZE,
    ) -> None:
        super().__init__()
        (in_channels,) = _checked("in_channels", [in_channels])
        hidden = _checked("hidden_channels", hidden_channels)
        (fc_size,) = _checked("fc_size", [fc_size])
        s = bottleneck_size(image_size, len(hidden))
        layers: list[nn.Module] = []
        for cin, cout in zip((in_channels, *hidden), hidden, strict=False):
            layers += [nn.Conv2d(cin, cout, kernel_size=4, stride=2, padding=1), nn.ReLU()]
        self.convs = nn.Sequential(*layers)
        self.fc = nn.Sequential(nn.Linear(hidden[-1] * s * s, fc_size), nn.ReLU())
        self.out_features = fc_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # (B, C, H, W) -> (B, hidden[-1], H / 2^n, W / 2^n) -> (B, fc_size)
        return self.fc(self.convs(x).flatten(1))


class BurgessDecoder(nn.Module):
    """Linear → ReLU → Linear → ReLU → reshape, then ConvTranspose2d(k=4, s=2, p=1) blocks to the image.

    Args:
        latent_dim: Size of the code ``z``.
        out_channels: Image channels.
        image_size: Output height and width; a multiple of ``2 ** len(hidden_channels)``.
        hidden_channels: The encoder's channels, in encoder order; the decoder runs them in reverse.
        fc_size: Width of the first dense layer (256).
    """

    def __init__(
        self,
        latent_dim: int,
        out_channels: int,
        image_size: int,
        hidden_channels: Sequence[int] = BURGESS_HIDDEN_CHANNELS,
        fc_size: int = BURGESS_FC_SIZE,
    ) -> None:
        super().__init__()
        (latent_dim,) = _checked("latent_dim", [latent_dim])
        (out_channels,) = _checked("out_channels", [out_channels])
        hidden = _checked("hidden_channels", hidden_channels)[::-1]  # e.g. 64, 64, 32, 32
        (fc_size,) = _checked("fc_size", [fc_size])
        s = bottleneck_size(image_size, len(hidden))
        self.in_shape = (hidden[0], s, s)
        self.fc = nn.Sequential(
            nn.Linear(latent_dim, fc_size), nn.ReLU(), nn.Linear(fc_size, hidden[0] * s * s), nn.ReLU()
        )
        layers: list[nn.Module] = []
        for cin, cout in zip(hidden, (*hidden[1:], out_channels), strict=True):
            layers += [nn.ConvTranspose2d(cin, cout, kernel_size=4, stride=2, padding=1), nn.ReLU()]
        self.deconvs = nn.Sequential(*layers[:-1])  # the last layer's output stays linear

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.fc(z).view(z.shape[0], *self.in_shape)  # (B, hidden[-1], s, s)
        return self.deconvs(h)  # (B, C, H, W)
