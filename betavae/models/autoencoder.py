"""Deterministic autoencoders: one model, a swappable network, and options for every textbook variant.

- linear / dense / convolutional / recurrent: the ``net`` (see ``betavae.nets``);
- denoising and super-resolution: a ``corruption`` of the input (the target stays clean);
- sparse: an L1 penalty on the code and/or a KL sparsity penalty toward a target activation.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import torch
from torch import nn

from betavae.errors import ConfigError
from betavae.image_seeds import image_seeds
from betavae.models.base import AutoencoderModule
from betavae.models.corruption import Corruption

#: builds a network from (in_channels, image_size); in YAML a class path with its other init_args
NetFactory = Callable[[int, int], nn.Module]
CodeActivation = Literal["Identity", "Sigmoid", "ReLU", "SELU", "Tanh"]


def sparsity_kl(target: float, mean_activation: torch.Tensor) -> torch.Tensor:
    """Σ_j KL(Bernoulli(target) ‖ Bernoulli(mean_activation_j)), in nats."""
    q = mean_activation.clamp(1e-6, 1 - 1e-6)
    p = target
    return (p * torch.log(p / q) + (1 - p) * torch.log((1 - p) / (1 - q))).sum()


class Autoencoder(AutoencoderModule):
    """Deterministic autoencoder: x → code → x̂ with a swappable network.

    Loss = recon + l1_weight · L1 + sparsity_weight · KL_sparsity, where ``recon`` is the base's
    reconstruction term (``likelihood``, ``reduction``) between the output for the (possibly corrupted)
    input and the clean image; L1 = Σ_units |code|, averaged over the batch; KL_sparsity =
    Σ_units KL(p ‖ p̂_j) with p̂_j the batch-mean activation of code unit j (needs ``Sigmoid`` codes).

    Args:
        net: The network: a class from ``betavae.nets`` (``LinearNet``, ``StackedDenseNet``, ``ConvNet``,
            ``RecurrentNet``) or any ``nn.Module`` with ``encode``/``decode`` whose first two init arguments
            are ``in_channels`` and ``image_size`` (filled in from the data).
        corruption: Corruption of the input only: ``GaussianNoise``/``Masking`` (denoising) or ``Downsample``
            (super-resolution). Validation uses the same corruption, seeded per image by its dataset index.
        code_activation: Activation applied to the code (a ``torch.nn`` class name).
        l1_weight: Weight of the L1 activity penalty on the code.
        sparsity_target: Target mean activation p of each code unit (e.g. 0.1).
        sparsity_weight: Weight of the KL sparsity penalty; 0 turns it off.
        **kwargs: ``AutoencoderModule`` arguments (image shape, normalization, optimizer, likelihood, ...).
    """

    def __init__(
        self,
        net: NetFactory,
        corruption: Corruption | None = None,
        code_activation: CodeActivation = "Identity",
        l1_weight: float = 0.0,
        sparsity_target: float = 0.1,
        sparsity_weight: float = 0.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if code_activation not in CodeActivation.__args__:
            raise ConfigError(f"code_activation must be one of {CodeActivation.__args__}, got {code_activation!r}")
        if l1_weight < 0 or sparsity_weight < 0:
            raise ConfigError(
                f"penalty weights must be >= 0, got l1_weight={l1_weight}, sparsity_weight={sparsity_weight}"
            )
        if sparsity_weight > 0 and code_activation != "Sigmoid":
            raise ConfigError(
                "the KL sparsity penalty needs code activations in (0, 1): set code_activation: Sigmoid "
                f"(got {code_activation!r})"
            )
        if not 0 < sparsity_target < 1:
            raise ConfigError(f"sparsity_target must be in (0, 1), got {sparsity_target}")
        self.net = net(self.in_channels, self.image_size)
        self.code_activation = getattr(nn, code_activation)()
        self.corruption = corruption

    # ----------------------------------------------------------------- public API
    def corrupt(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """The corrupted input (normalized space), or ``x`` without a corruption."""
        if self.corruption is None:
            return x
        return self.normalize(self.corruption(self.to_pixels(x), generator=generator))

    def encode(self, x: torch.Tensor, label: torch.Tensor | None = None) -> torch.Tensor:
        """(B, C, H, W) normalized images → codes (B, D), or (B, C', h, w) for a spatial code."""
        return self.code_activation(self.net.encode(x))

    def decode(self, code: torch.Tensor, label: torch.Tensor | None = None) -> torch.Tensor:
        """Codes → (B, C, H, W) images in normalized space."""
        return self.output_to_image(self.net.decode(code))

    def forward(self, x: torch.Tensor, label: torch.Tensor | None = None) -> torch.Tensor:
        return self.decode(self.encode(x))

    def reconstruct(self, x: torch.Tensor, label: torch.Tensor | None = None) -> torch.Tensor:
        """Encode and decode ``x`` as given (corrupt it first with ``corrupt`` to see denoising)."""
        return self.decode(self.encode(x))

    def embed(self, x: torch.Tensor, label: torch.Tensor | None = None) -> torch.Tensor:
        return self.encode(x).flatten(1)

    # ----------------------------------------------------------------- loss
    @property
    def corrupts_input(self) -> bool:
        return self.corruption is not None

    def loss_parts(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        x = batch["image"]
        # validation / test: each image corrupted the same way in every epoch and on any process
        x_in = self.corrupt(x) if self.training else self.corrupt_seeded(x, image_seeds(batch))
        code = self.encode(x_in)
        recon = self.reconstruction_loss(self.net.decode(code), x)
        parts = {"recon": recon}
        hp = self.hparams
        if hp.l1_weight > 0:
            parts["l1"] = code.abs().flatten(1).sum(dim=1).mean()
        if hp.sparsity_weight > 0:
            parts["sparsity_kl"] = sparsity_kl(hp.sparsity_target, code.flatten(1).mean(dim=0))
            parts["mean_activation"] = code.detach().mean()
        loss = recon + hp.l1_weight * parts.get("l1", 0.0) + hp.sparsity_weight * parts.get("sparsity_kl", 0.0)
        return {"loss": loss, **parts}
