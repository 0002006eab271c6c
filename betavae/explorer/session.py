"""The model side of the latent explorer: a checkpoint's latent dimensions, labelled, and decodes of any code.

One ``LatentExplorer`` per served checkpoint. At start it measures, on the data module's validation split,
what the traversal figures show beside each row (``betavae.scoring.traversal``): each dimension's mean
KL(q(z_d | x) ‖ N(0, 1)) and, on data with ground truth, the factor or attribute it predicts best
(``dimension_captions``); it keeps the first validation images as the page's thumbnails. Afterwards it
decodes codes into PNGs, encodes a thumbnail (its μ) and scores that reconstruction against the original
as ``evaluate`` does (PSNR, SSIM in [0, 1], data range 1).

Which models: anything with ``decode`` and ``to_pixels``. A VAE (``encode`` returns a posterior) gets the
prior's scale, N(0, 1) per dimension; an autoencoder with a deterministic code gets each dimension's mean
and standard deviation over the validation codes instead (sliders span mean ± 3 sd, draws are Gaussian
with those moments) and no KL; a model without an encoder (a GAN) gets N(0, 1), its sampling prior, and no
encodings, KL or captions. A conditional model decodes with a chosen class.
"""

from __future__ import annotations

import io
import json
import math
import threading
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image, ImageDraw, PngImagePlugin
from torch import nn

from betavae.errors import ConfigError
from betavae.model_api import api_problem, evaluating, model_input, needs_label, with_label
from betavae.scoring.codes import ValidationCodes, dimension_captions, ground_truth_of
from betavae.scoring.reconstruction import reconstruction_metrics
from betavae.scoring.traversal import INACTIVE_KL, mean_kl_per_dim, row_label, top_dims

#: the slider span in units of each dimension's scale (the prior's sd for a VAE): [-3, 3] as in the traversals
SPAN = 3.0


class RequestError(ValueError):
    """A request the explorer cannot serve (a bad code, a dimension or image out of range); its message says
    what was wrong and what is allowed. The server answers it with status 400."""


@dataclass
class Dimension:
    """One latent dimension as the page shows it: a slider over ``center ± SPAN · scale``."""

    index: int
    label: str  # the traversal row's label, e.g. "z3 · KL 2.10 · pos_x ↑ (MI 0.78)"
    kl: float | None  # mean KL in nats on the validation images; None without a posterior
    caption: str | None  # what it predicts best, e.g. "pos_x ↑ (MI 0.78)"
    active: bool  # False: KL below INACTIVE_KL, shown collapsed
    center: float
    scale: float


def png_bytes(pixels: torch.Tensor, scale: int = 1, **text: str) -> bytes:
    """An image (C, H, W) in [0, 1] as PNG bytes (grey for one channel), enlarged ``scale`` times (nearest),
    with ``text`` as PNG text chunks."""
    array = pixels.detach().float().cpu().clamp(0, 1).mul(255).round().to(torch.uint8)  # (C, H, W)
    array = array[0] if array.shape[0] == 1 else array.permute(1, 2, 0)  # (H, W) or (H, W, C)
    image = Image.fromarray(array.numpy())
    if scale > 1:
        image = image.resize((image.width * scale, image.height * scale), Image.NEAREST)
    info = PngImagePlugin.PngInfo()
    for key, value in text.items():
        info.add_text(key, value)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", pnginfo=info)
    return buffer.getvalue()


class LatentExplorer:
    """A model's latent space, served: labelled dimensions, decodes of codes, encodings of validation images.

    Args:
        model: The model with its weights loaded (``decode`` and ``to_pixels`` are needed).
        datamodule: Its data module: the validation split gives the thumbnails, the KL and the captions;
            ``None``: none of these.
        num_images: Validation images offered as starting points (the first ones).
        kl_images: Validation images the KL and the captions are measured on (the first ones); ``None``: all.
        source: What the page names as the model (the checkpoint's path, epoch and step).
        device: Where the model runs.

    Raises:
        ConfigError: the model cannot decode, or its code size cannot be found.
    """

    def __init__(
        self,
        model: nn.Module,
        datamodule: Any = None,
        num_images: int = 32,
        kl_images: int | None = 5000,
        source: dict[str, Any] | None = None,
        device: torch.device | str = "cpu",
    ) -> None:
        problem = api_problem(model, decode=1, to_pixels=1)
        if problem:
            raise ConfigError(f"explore: {problem}; the explorer decodes latent codes into images")
        if num_images < 0 or (kl_images is not None and kl_images < 2):
            raise ConfigError(f"need num_images >= 0 and kl_images >= 2 (or None); got {num_images}, {kl_images}")
        self.model = model.to(device).eval()
        self.device = torch.device(device)
        self.source = dict(source or {})
        self.lock = threading.Lock()  # one model call at a time: the server answers requests in threads
        self.notes: list[str] = []
        self.classes = self._classes(datamodule)
        self.images: list[dict[str, Any]] = []  # the thumbnails: normalized "image" (C, H, W), "label", "index"
        encoder_problem = api_problem(model, encode=1, embed=1)
        self.code_shape: tuple[int, ...] = ()
        if encoder_problem is None and datamodule is not None:
            kl, captions, codes = self._measure(datamodule, num_images, kl_images)
        else:
            kl, captions, codes = None, {}, None
            why = encoder_problem or "no data module to encode images from"
            self.notes.append(f"no encoder ({why}): sliders, the mean and random draws work; no images to start from")
        if not self.code_shape:
            latent_dim = getattr(model, "latent_dim", None)
            if not isinstance(latent_dim, int) or latent_dim < 1:
                raise ConfigError(f"explore: cannot tell the code size of {type(model).__name__} (no latent_dim)")
            self.code_shape = (latent_dim,)
        self.latent_dim = math.prod(self.code_shape)
        if kl is None and codes is not None:  # a deterministic code: its own spread
            center, scale = codes.mean(dim=0), codes.std(dim=0).clamp_min(1e-6)
            self.notes.append("a deterministic code: sliders span each dimension's validation mean ± 3 sd")
        else:
            center, scale = torch.zeros(self.latent_dim), torch.ones(self.latent_dim)
        self.center, self.scale = center.double(), scale.double()
        self.prior_scale = kl is not None or codes is None  # N(0, 1): the prior of a VAE (and of a GAN)
        order = top_dims(kl, self.latent_dim) if kl is not None else list(range(self.latent_dim))
        self.dimensions = [
            Dimension(
                index=d,
                label=row_label(d, kl, captions.get(d)),
                kl=round(float(kl[d]), 4) if kl is not None else None,
                caption=captions.get(d),
                active=kl is None or float(kl[d]) >= INACTIVE_KL,
                center=float(center[d]),
                scale=float(scale[d]),
            )
            for d in order
        ]
        self.dimensions.sort(key=lambda dim: not dim.active)  # active first, each group in its order
        self.image_shape = list(self.decode(self.center.tolist(), self.label(None)).shape)  # (C, H, W)

    # ----------------------------------------------------------------- set-up
    def _classes(self, datamodule: Any) -> list[str] | None:
        """Class names of a conditional model (it decodes with a class), else ``None``."""
        if not needs_label(self.model):
            return None
        n = int(self.model.hparams["num_classes"])
        names = list(getattr(datamodule, "classes", None) or [])
        return [str(names[c]) if c < len(names) else f"class {c}" for c in range(n)]

    def _measure(
        self, datamodule: Any, num_images: int, kl_images: int | None
    ) -> tuple[torch.Tensor | None, dict[int, str], torch.Tensor | None]:
        """Keep the thumbnails and measure, on the first ``kl_images`` validation images, the mean KL per
        dimension and the captions (a posterior), or the codes' spread (a deterministic code)."""
        datamodule.setup("validate")
        labelled = ground_truth_of(datamodule)[0] is not None
        collected = ValidationCodes(kl_images) if labelled else None
        batches = self._keeping_thumbnails(datamodule.eval_batches("val"), num_images, kl_images)
        try:
            kl = mean_kl_per_dim(self.model, batches, collected, datamodule)  # (D,)
        except TypeError:  # encode gives no posterior: a deterministic code
            again = self._keeping_thumbnails(datamodule.eval_batches("val"), num_images, kl_images)
            return None, {}, torch.cat([self._embed(batch["image"], batch) for batch in again])  # (N, D)
        self.code_shape = (kl.numel(),)
        captions: dict[int, str] = {}
        observed = collected.gather(None) if collected is not None else None
        if observed is not None:
            try:
                captions = dimension_captions(*observed, collected.names, datamodule)
            except ValueError as err:
                self.notes.append(f"no captions: {err}")
        return kl, captions, None

    def _keeping_thumbnails(
        self, batches: Iterator[dict[str, Any]], num_images: int, limit: int | None
    ) -> Iterator[dict[str, Any]]:
        """``batches`` up to ``limit`` images, keeping the first ``num_images`` images on the way."""
        self.images, seen = [], 0
        for batch in batches:
            if limit is not None and seen >= limit:
                return
            n = len(batch["image"])
            per_image = {k: v for k, v in batch.items() if isinstance(v, torch.Tensor) and v.dim() and len(v) == n}
            for i in range(min(n, num_images - len(self.images))):
                self.images.append({k: v[i].detach().cpu() for k, v in per_image.items()})
            seen += n
            yield batch

    def _embed(self, x: torch.Tensor, batch: dict[str, Any]) -> torch.Tensor:
        """Codes (B, D) of normalized images ``x`` (corrupted as in validation for models that corrupt their
        input); sets ``code_shape`` from ``encode``."""
        label = batch.get("label")
        label = label.to(self.device) if isinstance(label, torch.Tensor) else None
        with evaluating(self.model):
            x_in = model_input(self.model, {**batch, "image": x.to(self.device)})
            encoded = with_label(self.model.encode, x_in, label=label)
            if isinstance(encoded, torch.Tensor):
                self.code_shape = tuple(encoded.shape[1:])
            return with_label(self.model.embed, x_in, label=label).flatten(1).cpu()

    # ----------------------------------------------------------------- requests
    def info(self) -> dict[str, Any]:
        """What the page needs: the model, the dimensions in display order, the images, the classes, notes."""
        return {
            **self.source,
            "model": type(self.model).__name__,
            "latent_dim": self.latent_dim,
            "span": SPAN,
            "prior": self.prior_scale,
            "dimensions": [asdict(d) for d in self.dimensions],
            "num_images": len(self.images),
            "image_shape": self.image_shape,
            "classes": self.classes,
            "has_encoder": bool(self.images),
            "notes": self.notes,
        }

    def code(self, values: Sequence[float] | str | None = None, overrides: str | None = None) -> torch.Tensor:
        """A checked code (D,): ``values`` (a sequence or ``"0.1,-2,..."``; ``None``: the center) with
        ``overrides`` (``"7:1.3,2:-2"``: dimension 7 set to 1.3, 2 to -2) applied.

        Raises:
            RequestError: not D finite numbers, or a dimension out of range; the message says which.
        """
        if values is None or values == "":
            z = self.center.clone()
        else:
            parts = values.split(",") if isinstance(values, str) else list(values)
            try:
                z = torch.tensor([float(v) for v in parts], dtype=torch.float64)
            except (TypeError, ValueError):
                raise RequestError(f"z must be {self.latent_dim} comma-separated numbers; got {values!r}") from None
            if z.numel() != self.latent_dim:
                raise RequestError(f"z has {z.numel()} values; the model's code has {self.latent_dim} dimensions")
        for item in (overrides or "").split(","):
            if not item.strip():
                continue
            try:
                dim, value = item.split(":")
                dim, value = int(dim), float(value)
            except ValueError:
                raise RequestError(f"set takes dim:value pairs like 7:1.3,2:-2; got {item!r}") from None
            if not 0 <= dim < self.latent_dim:
                raise RequestError(
                    f"dimension {dim} is out of range: the model has {self.latent_dim} latent dimensions "
                    f"(0..{self.latent_dim - 1})"
                )
            z[dim] = value
        if not torch.isfinite(z).all():
            bad = torch.nonzero(~torch.isfinite(z)).flatten().tolist()
            raise RequestError(f"z must be finite; dimension(s) {bad} are not")
        return z

    def label(self, value: int | str | None) -> torch.Tensor | None:
        """The class a conditional model decodes with, checked (``None``: class 0); ``None`` for other models."""
        if self.classes is None:
            return None
        try:
            k = int(value) if value not in (None, "") else 0
        except ValueError:
            raise RequestError(f"label must be a class index; got {value!r}") from None
        if not 0 <= k < len(self.classes):
            raise RequestError(f"label {k} is out of range: the model has {len(self.classes)} classes")
        return torch.tensor([k], device=self.device)

    def image(self, index: int | str) -> dict[str, Any]:
        """Validation image ``index`` of the thumbnails (its normalized ``"image"``, ``"label"``, ``"index"``)."""
        try:
            i = int(index)
        except (TypeError, ValueError):
            raise RequestError(f"index must be an integer; got {index!r}") from None
        if not 0 <= i < len(self.images):
            if not self.images:
                raise RequestError(f"{type(self.model).__name__} has no encoder here: no images to start from")
            raise RequestError(f"image {i} is out of range: there are {len(self.images)} (0..{len(self.images) - 1})")
        return self.images[i]

    def decode(self, z: Sequence[float] | torch.Tensor, label: torch.Tensor | None = None) -> torch.Tensor:
        """The image (C, H, W) in [0, 1] that code ``z`` (D,) decodes to."""
        z = torch.as_tensor(z, dtype=torch.float32).reshape(1, *self.code_shape).to(self.device)
        with self.lock, evaluating(self.model):
            return self.model.to_pixels(with_label(self.model.decode, z, label=label))[0].cpu()

    def original(self, index: int | str) -> torch.Tensor:
        """Validation image ``index`` in [0, 1] (C, H, W)."""
        return self.model.to_pixels(self.image(index)["image"].unsqueeze(0).to(self.device))[0].cpu()

    def encode(self, index: int | str) -> dict[str, Any]:
        """The code of validation image ``index`` (μ for a VAE; from its corrupted input for models that corrupt
        their input, as in validation), its class, and the scores of that code's decode against the original."""
        item = self.image(index)
        batch = {k: v.unsqueeze(0) for k, v in item.items()}
        with self.lock:
            z = self._embed(batch["image"], batch)[0]  # (D,)
        label = item.get("label") if self.classes is not None else None
        recon = self.decode(z, label.reshape(1).to(self.device) if label is not None else None)
        return {
            "z": [float(v) for v in z],
            "label": int(label) if label is not None else None,
            **self.scores(recon, index),
        }

    def scores(self, pixels: torch.Tensor, index: int | str) -> dict[str, float]:
        """PSNR (dB) and SSIM of an image (C, H, W) in [0, 1] against validation image ``index``, as ``evaluate``
        scores reconstructions (``reconstruction_metrics``: data range 1, SSIM's Gaussian window σ 1.5)."""
        metrics = reconstruction_metrics()
        metrics.update(pixels.unsqueeze(0), self.original(index).unsqueeze(0))
        return {k: float(v) for k, v in metrics.compute().items()}

    def prior(self, seed: int | str | None = None) -> list[float]:
        """A random code: ``center + scale · ε``, ε ~ N(0, I) seeded by ``seed`` (the prior for VAEs and GANs)."""
        try:
            generator = torch.Generator().manual_seed(int(seed)) if seed not in (None, "") else torch.Generator()
        except ValueError:
            raise RequestError(f"seed must be an integer; got {seed!r}") from None
        if seed in (None, ""):
            generator.seed()
        eps = torch.randn(self.latent_dim, generator=generator, dtype=torch.float64)
        return [float(v) for v in self.center + self.scale * eps]

    def save_png(self, z: torch.Tensor, label: torch.Tensor | None = None, scale: int = 8) -> bytes:
        """The image of ``z`` enlarged ``scale`` times over a footer with the values of the active dimensions,
        every value in the PNG's text chunk ``betavae:z`` (JSON) beside the checkpoint and the class."""
        pixels = self.decode(z, label)
        image = Image.open(io.BytesIO(png_bytes(pixels, scale))).convert("RGB")
        shown = [d for d in self.dimensions if d.active][:12]
        lines = [f"z{d.index} = {float(z[d.index]):+.2f}" for d in shown]
        if len(shown) < self.latent_dim:
            lines.append(f"(+{self.latent_dim - len(shown)} more in the PNG's text)")
        footer = Image.new("RGB", (max(image.width, 200), 14 * len(lines) + 8), "white")
        draw = ImageDraw.Draw(footer)
        for i, line in enumerate(lines):
            draw.text((4, 4 + 14 * i), line, fill="black")
        sheet = Image.new("RGB", (footer.width, image.height + footer.height), "white")
        sheet.paste(image, (0, 0))
        sheet.paste(footer, (0, image.height))
        info = PngImagePlugin.PngInfo()
        info.add_text("betavae:z", json.dumps([round(float(v), 6) for v in z]))
        info.add_text("betavae:model", type(self.model).__name__)
        info.add_text("betavae:checkpoint", str(self.source.get("checkpoint", "")))
        if label is not None:
            info.add_text("betavae:label", str(int(label[0])))
        buffer = io.BytesIO()
        sheet.save(buffer, format="PNG", pnginfo=info)
        return buffer.getvalue()

    def file_stem(self) -> str:
        """A name for saved images: ``explore_<checkpoint stem>``."""
        return "explore_" + Path(str(self.source.get("checkpoint") or "model")).stem
