"""Gaussian VAE, the study's β-VAE (Higgins et al. 2017; Burgess et al. 2018 capacity), conditional VAE."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from betavae.errors import ConfigError
from betavae.image_seeds import image_seeds
from betavae.models.base import AutoencoderModule, check_non_negative
from betavae.models.injection import build_part
from betavae.models.posterior import DiagonalGaussian
from betavae.nets import ConvDecoder, ConvEncoder

#: builds the encoder from (input channels, image size); it maps (B, C, H, W) to features (B, out_features).
#: In YAML a class path with its other init_args (``betavae.nets.ConvEncoder``, ``betavae.nets.BurgessEncoder``)
EncoderFactory = Callable[[int, int], nn.Module]
#: builds the decoder from (code size, output channels, image size); it maps (B, D) to the image (B, C, H, W)
DecoderFactory = Callable[[int, int, int], nn.Module]


def image_noise(batch: dict[str, Any], mean: torch.Tensor) -> torch.Tensor:
    """ε ~ N(0, I) like ``mean`` (B, D), each image's row seeded by its dataset ``"index"`` (else its
    position in the batch): validation and test losses do not depend on the RNG state, the batch size,
    the order or the number of processes the images are spread over."""
    seeds = image_seeds(batch)
    generator = torch.Generator(device=mean.device)
    rows = [torch.randn(mean.shape[1:], generator=generator.manual_seed(int(s)), device=mean.device) for s in seeds]
    return torch.stack(rows).to(mean.dtype)  # (B, D)


class VAE(AutoencoderModule):
    """Gaussian VAE with an injected encoder and decoder (by default the study's convolutional ones).

    Loss = recon + kld_weight · KL. ``recon`` is the reconstruction term chosen by ``likelihood`` and
    ``reduction`` (default: the mean squared error in normalized space averaged over every pixel,
    channel and image, ``F.mse_loss``'s default, as in the study); ``KL`` is KL(q(z|x) ‖ N(0, I)) summed
    over latent dimensions and averaged over the batch, in nats. Because the default ``recon`` is a
    per-pixel mean, the KL weight is small (the study's 0.0025): β and ``kld_weight`` only have a
    meaning together with the reduction.

    Args:
        encoder: The encoder, by class path with its other init_args; built as ``encoder(in_channels,
            image_size)`` (the image's channels and size come from the data) and mapping images to features
            of size ``out_features``, on which the VAE puts its μ and log σ² layers. ``betavae.nets.ConvEncoder``
            (the study's: k3 convolutions with batch normalization; ``hidden_channels`` (32, 64, 128, 256, 512),
            its batik model (32, 64, 128)) or ``betavae.nets.BurgessEncoder`` (Burgess et al. 2018 /
            disentanglement_lib: k4 convolutions, ReLU, a 256-unit dense layer, no batch normalization;
            (32, 32, 64, 64)), or any such ``nn.Module``.
        decoder: The decoder, by class path; built as ``decoder(latent_dim, in_channels, image_size)``:
            ``betavae.nets.ConvDecoder`` (the study's; ``kernel_size`` 3, or 4 for the textbook CelebA VAE) or
            ``betavae.nets.BurgessDecoder``. Give it the encoder's ``hidden_channels`` to mirror it.
        latent_dim: Size of the latent code (the study: 128).
        kld_weight: Weight of the KL term (the study's ``kld_weight``, 0.0025).
        condition_size: Extra input channels of the encoder and extra inputs of the decoder: 0 for an
            unconditional VAE; ``ConditionalVAE`` passes its number of classes.
        **kwargs: ``AutoencoderModule`` arguments (image shape, normalization, optimizer, likelihood).
    """

    def __init__(
        self,
        encoder: EncoderFactory = ConvEncoder,
        decoder: DecoderFactory = ConvDecoder,
        latent_dim: int = 128,
        kld_weight: float = 0.0025,
        condition_size: int = 0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if latent_dim < 1:
            raise ConfigError(f"latent_dim must be a positive integer, got {latent_dim}")
        if condition_size < 0:
            raise ConfigError(f"condition_size must be >= 0, got {condition_size}")
        check_non_negative(kld_weight=kld_weight)
        self.latent_dim = latent_dim
        cond = condition_size
        # the attribute names (encoder, fc_mu, fc_logvar, decoder) are the checkpoints' weight names
        self.encoder = build_part(encoder, self.in_channels + cond, self.image_size, name="encoder")
        features = getattr(self.encoder, "out_features", None)
        if not isinstance(features, int):
            raise ConfigError(
                f"the encoder {type(self.encoder).__name__} must have an int attribute out_features (the size of "
                "the features it returns, on which the VAE puts its mean and log-variance layers)"
            )
        self.fc_mu = nn.Linear(features, latent_dim)
        self.fc_logvar = nn.Linear(features, latent_dim)
        self.decoder = build_part(decoder, latent_dim + cond, self.in_channels, self.image_size, name="decoder")

    # ----------------------------------------------------------------- public API
    def encode(self, x: torch.Tensor, label: torch.Tensor | None = None) -> DiagonalGaussian:
        """(B, C, H, W) normalized images → posterior with μ, log σ² of shape (B, D)."""
        h = self.encoder(x)
        return DiagonalGaussian(self.fc_mu(h), self.fc_logvar(h))

    def decode_raw(self, z: torch.Tensor, label: torch.Tensor | None = None) -> torch.Tensor:
        """(B, D) codes → the decoder's raw output (B, C, H, W): the image, or logits for ``bce``."""
        return self.decoder(z)

    def decode(self, z: torch.Tensor, label: torch.Tensor | None = None) -> torch.Tensor:
        """(B, D) codes → (B, C, H, W) images in normalized space."""
        return self.output_to_image(self.decode_raw(z, label))

    def forward(
        self, x: torch.Tensor, label: torch.Tensor | None = None, sample_posterior: bool = True
    ) -> tuple[torch.Tensor, DiagonalGaussian]:
        """Encode, draw z (or take μ when ``sample_posterior`` is False), decode: (x̂, posterior)."""
        posterior = self.encode(x, label)
        z = posterior.sample() if sample_posterior else posterior.mode()
        return self.decode(z, label), posterior

    def reconstruct(self, x: torch.Tensor, label: torch.Tensor | None = None) -> torch.Tensor:
        """Decode μ: the deterministic reconstruction used for metrics and figures."""
        return self.decode(self.encode(x, label).mode(), label)

    def embed(self, x: torch.Tensor, label: torch.Tensor | None = None) -> torch.Tensor:
        return self.encode(x, label).mode()

    def sample(
        self, n: int, generator: torch.Generator | None = None, label: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Decode ``n`` draws from the prior N(0, I); normalized space (use ``to_pixels`` to view)."""
        z = torch.randn(n, self.latent_dim, generator=generator, device=self.device)
        return self.decode(z, label)

    @classmethod
    def comparison_beta(cls, hparams: Mapping[str, Any]) -> float | None:
        """1: a plain (or conditional) VAE's KL is unweighted, beyond ``kld_weight``."""
        return 1.0

    # ----------------------------------------------------------------- loss
    def kl_penalty(self, kl: torch.Tensor) -> dict[str, torch.Tensor]:
        """The weighted KL term (``"kl_term"``) from the batch-mean KL, plus anything worth logging."""
        return {"kl_term": self.hparams.kld_weight * kl}

    def regularizer(
        self, kl: torch.Tensor, posterior: DiagonalGaussian, z: torch.Tensor, batch: dict[str, Any]
    ) -> dict[str, torch.Tensor]:
        """Everything the loss adds to ``recon`` (``"kl_term"``), plus parts to log under their own names.

        The hook for models whose penalty needs more than the batch-mean KL (as disentanglement_lib's
        ``regularizer(kl_loss, z_mean, z_logvar, z_sampled)``): the posterior (μ, log σ², (B, D)), the
        codes ``z`` (B, D) the decoder saw, and the batch (for seeds). By default ``kl_penalty(kl)``.
        """
        return self.kl_penalty(kl)

    def loss_parts(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        x, label = batch["image"], batch.get("label")
        posterior = self.encode(x, label)
        noise = None if self.training else image_noise(batch, posterior.mean)  # validation: the same ε every time
        z = posterior.sample(noise=noise)  # (B, D)
        recon = self.reconstruction_loss(self.decode_raw(z, label), x)
        kl = posterior.kl().mean()
        extra = self.regularizer(kl, posterior, z, batch)
        return {"loss": recon + extra.pop("kl_term"), "recon": recon, "kl": kl, **extra}


class BetaVAE(VAE):
    """The study's β-VAE (AntixK PyTorch-VAE ``BetaVAE``), with a linear output in normalized space.

    ``loss_type: H`` (Higgins): loss = recon + β · kld_weight · KL.
    ``loss_type: B`` (Burgess): loss = recon + γ · kld_weight · |KL − C|, where the capacity C rises
    linearly from 0 to ``max_capacity`` nats over ``capacity_max_iter`` optimizer steps and then stays.
    C is a function of the trainer's global step, which the checkpoint keeps, so a resumed run
    continues the schedule. ``recon`` and ``KL`` are as in :class:`VAE`.

    Args:
        beta: β of the H loss (the study: 10 and 100).
        loss_type: ``"H"`` (Higgins) or ``"B"`` (Burgess capacity).
        gamma: γ of the B loss.
        max_capacity: C_max of the B loss, in nats.
        capacity_max_iter: Optimizer steps over which C rises from 0 to C_max.
        **kwargs: ``VAE`` arguments (encoder, decoder, latent_dim, kld_weight, image shape, optimizer).
    """

    def __init__(
        self,
        beta: float = 4.0,
        loss_type: Literal["H", "B"] = "H",
        gamma: float = 1000.0,
        max_capacity: float = 25.0,
        capacity_max_iter: int = 100_000,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        check_non_negative(beta=beta, gamma=gamma, max_capacity=max_capacity)
        if loss_type not in ("H", "B"):
            raise ConfigError(f"loss_type must be 'H' (Higgins) or 'B' (Burgess), got {loss_type!r}")
        if capacity_max_iter < 1:
            raise ConfigError(f"capacity_max_iter must be at least 1, got {capacity_max_iter}")

    @classmethod
    def comparison_beta(cls, hparams: Mapping[str, Any]) -> float | None:
        """``beta`` for the H loss; ``None`` for the capacity loss (``loss_type: B``, the AnnealedVAE), whose KL
        weight is γ and whose ``beta`` is unused."""
        if hparams.get("loss_type", "H") == "B":
            return None
        return float(hparams.get("beta", 4.0))

    def capacity(self, step: int | None = None) -> float:
        """C at optimizer step ``step`` (default: the trainer's global step), in nats."""
        step = self.global_step if step is None else step
        c_max = self.hparams.max_capacity
        return min(c_max, c_max * step / self.hparams.capacity_max_iter)

    def kl_penalty(self, kl: torch.Tensor) -> dict[str, torch.Tensor]:
        hp = self.hparams
        if hp.loss_type == "H":
            return {"kl_term": hp.beta * hp.kld_weight * kl}
        c = torch.tensor(self.capacity(), device=kl.device, dtype=kl.dtype)
        return {"kl_term": hp.gamma * hp.kld_weight * (kl - c).abs(), "capacity": c}


class ConditionalVAE(VAE):
    """Conditional VAE: the class label is fed to the encoder (as one-hot planes stacked on the image
    channels) and to the decoder (one-hot, concatenated with z), so ``decode(z, label)`` draws that
    class and ``sample(n, label=...)`` samples class-conditionally. Needs batches with ``"label"``.

    Args:
        num_classes: Number of classes; labels are integers in [0, num_classes).
        **kwargs: ``VAE`` arguments (encoder, decoder, latent_dim, kld_weight, likelihood, ...).
    """

    def __init__(self, num_classes: int = 10, **kwargs: Any) -> None:
        if num_classes < 2:
            raise ConfigError(f"num_classes must be at least 2, got {num_classes}")
        super().__init__(condition_size=num_classes, **kwargs)
        self.num_classes = num_classes

    def one_hot(self, label: torch.Tensor | None, batch_size: int) -> torch.Tensor:
        """Checked one-hot labels (B, num_classes) as floats on the model's device."""
        k = self.hparams.num_classes
        if label is None:
            raise ConfigError(
                "ConditionalVAE needs class labels: give label= (a (B,) tensor of class indices in "
                f"[0, {k})), and train on a data module whose batches carry 'label' (e.g. ShapesDataModule)"
            )
        label = torch.as_tensor(label, device=self.device)
        if label.shape != (batch_size,) or label.is_floating_point():
            raise ConfigError(
                f"ConditionalVAE labels must be integer class indices of shape ({batch_size},), "
                f"got shape {tuple(label.shape)} and dtype {label.dtype}"
            )
        if label.numel() and (label.min() < 0 or label.max() >= k):
            raise ConfigError(f"ConditionalVAE labels must lie in [0, {k}), got {label.min()}..{label.max()}")
        return F.one_hot(label.long(), k).float()

    def encode(self, x: torch.Tensor, label: torch.Tensor | None = None) -> DiagonalGaussian:
        planes = self.one_hot(label, x.shape[0])[:, :, None, None].expand(-1, -1, *x.shape[-2:])
        return super().encode(torch.cat([x, planes], dim=1))  # (B, C + K, H, W)

    def decode_raw(self, z: torch.Tensor, label: torch.Tensor | None = None) -> torch.Tensor:
        return super().decode_raw(torch.cat([z, self.one_hot(label, z.shape[0])], dim=1))  # (B, D + K)

    def sample(
        self, n: int, generator: torch.Generator | None = None, label: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Decode ``n`` prior draws of class ``label`` (B,); by default the classes in turn 0, 1, 2, …"""
        if label is None:
            label = torch.arange(n, device=self.device) % self.hparams.num_classes
        return super().sample(n, generator=generator, label=label)
