"""Fully connected autoencoder networks: linear (PCA-like) and stacked dense."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from torch import nn

from betavae.errors import ConfigError
from betavae.nets.checks import check_positive

# names of torch.nn activation classes, built with getattr(nn, name)()
Activation = Literal["ReLU", "SELU", "ELU", "LeakyReLU", "Tanh", "Sigmoid"]


def check_activation(name: str) -> None:
    if name not in Activation.__args__:
        raise ConfigError(f"activation must be one of {Activation.__args__} (torch.nn class names), got {name!r}")


class LinearNet(nn.Module):
    """One linear map down to the code and one back up, no activations: with a squared error it
    learns the span of the top ``latent_dim`` principal components of its input.

    Args:
        in_channels: Image channels.
        image_size: Image height and width.
        latent_dim: Size of the code.
    """

    def __init__(self, in_channels: int, image_size: int, latent_dim: int = 2) -> None:
        super().__init__()
        check_positive(in_channels=in_channels, image_size=image_size, latent_dim=latent_dim)
        self.image_shape = (in_channels, image_size, image_size)
        features = in_channels * image_size * image_size
        self.encoder = nn.Linear(features, latent_dim)
        self.decoder = nn.Linear(latent_dim, features)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x.flatten(1))  # (B, C*H*W) -> (B, D)

    def decode(self, code: torch.Tensor) -> torch.Tensor:
        return self.decoder(code).view(-1, *self.image_shape)  # (B, D) -> (B, C, H, W)


class StackedDenseNet(nn.Module):
    """Stacked dense autoencoder: Linear + activation layers down to the code, mirrored back up.
    The textbook's Fashion-MNIST model is ``hidden=(100,)``, ``latent_dim=30``, SELU, with a sigmoid
    output (set ``output_activation: sigmoid`` on the model).

    Args:
        in_channels: Image channels.
        image_size: Image height and width.
        hidden: Widths of the hidden layers from the input side; the decoder mirrors them.
        latent_dim: Size of the code (a linear layer; the model may apply ``code_activation``).
        activation: Activation of the hidden layers.
    """

    def __init__(
        self,
        in_channels: int,
        image_size: int,
        hidden: Sequence[int] = (100,),
        latent_dim: int = 30,
        activation: Activation = "SELU",
    ) -> None:
        super().__init__()
        check_positive(in_channels=in_channels, image_size=image_size, latent_dim=latent_dim)
        check_positive(hidden=hidden)
        check_activation(activation)
        self.image_shape = (in_channels, image_size, image_size)
        widths = [in_channels * image_size * image_size, *hidden]
        act = getattr(nn, activation)
        down = [m for a, b in zip(widths, widths[1:], strict=False) for m in (nn.Linear(a, b), act())]
        self.encoder = nn.Sequential(*down, nn.Linear(widths[-1], latent_dim))
        up_widths = [latent_dim, *reversed(widths[1:])]
        up = [m for a, b in zip(up_widths, up_widths[1:], strict=False) for m in (nn.Linear(a, b), act())]
        self.decoder = nn.Sequential(*up, nn.Linear(up_widths[-1], widths[0]))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x.flatten(1))  # (B, D)

    def decode(self, code: torch.Tensor) -> torch.Tensor:
        return self.decoder(code).view(-1, *self.image_shape)  # (B, C, H, W)
