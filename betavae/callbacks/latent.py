"""Views of the latent space shared by every variant: 2-D scatters and decodings, PCA and t-SNE."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_warn
from torchvision.utils import make_grid

from betavae.callbacks._output import log_image
from betavae.model_api import evaluating
from betavae.plotting import plt, save_png
from betavae.run_folders import trainer_run_dir


def scatter_codes(points: np.ndarray, labels: np.ndarray | None, title: str, path: Path) -> Path:
    """A 2-D scatter of codes (N, 2), coloured by integer label when there are labels."""
    fig, ax = plt.subplots(figsize=(5.2, 4.6))
    if labels is None:
        ax.scatter(points[:, 0], points[:, 1], s=4, alpha=0.6)
    else:
        sc = ax.scatter(points[:, 0], points[:, 1], c=labels, cmap="tab10", s=4, alpha=0.7)
        ax.legend(*sc.legend_elements(), title="label", fontsize=7, loc="best", markerscale=0.8)
    ax.set_title(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


class LatentViews(Callback):
    """Pictures of the validation codes (``model.embed``: μ for VAEs, the code for autoencoders).

    For a 2-D latent: ``images/latent_scatter_epoch=EEE.png`` (codes coloured by label where the data
    has labels) and ``images/latent_grid_epoch=EEE.png`` (decodings of a ``grid_size`` x ``grid_size``
    grid spanning the 1st-99th percentile of the codes; skipped for models that need a label to
    decode). For larger latents: ``latent_pca_…`` and ``latent_tsne_…`` projections, coloured by label.
    Drawn at the end of training and every ``every_n_epochs`` validation epochs, on rank zero; also
    shown on W&B / TensorBoard. Codes come from up to ``max_points`` validation images.

    Args:
        every_n_epochs: Period in validation epochs; ``None`` draws only at the end of training.
        max_points: Validation images to embed.
        grid_size: Decodings per side of the 2-D grid.
        tsne: Draw the t-SNE projection for latents larger than 2 (slower than PCA).
        seed: Seed of t-SNE.
    """

    def __init__(
        self,
        every_n_epochs: int | None = None,
        max_points: int = 2000,
        grid_size: int = 15,
        tsne: bool = True,
        seed: int = 0,
    ) -> None:
        self.every_n_epochs = every_n_epochs
        self.max_points = max_points
        self.grid_size = grid_size
        self.tsne = tsne
        self.seed = seed
        self._codes: list[torch.Tensor] = []
        self._labels: list[torch.Tensor] = []
        self._epoch = -1  # the epoch the codes come from
        self._drawn = -1  # the epoch last drawn

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        trainer_run_dir(trainer)  # on every rank: trainer.log_dir is a collective under DDP

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._codes, self._labels, self._epoch = [], [], trainer.current_epoch

    def on_validation_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if not trainer.is_global_zero or sum(len(c) for c in self._codes) >= self.max_points:
            return
        with torch.no_grad():
            self._codes.append(pl_module.embed(batch["image"], batch.get("label")).detach().float().cpu())
        if "label" in batch:
            self._labels.append(torch.as_tensor(batch["label"]).cpu())

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        due = self.every_n_epochs is not None and (trainer.current_epoch + 1) % self.every_n_epochs == 0
        if due and not trainer.sanity_checking and trainer.is_global_zero:
            self.draw(trainer, pl_module)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.is_global_zero and self._codes and self._drawn != self._epoch:
            self.draw(trainer, pl_module)

    def draw(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        codes = torch.cat(self._codes)[: self.max_points].numpy()  # (N, D)
        labels = torch.cat(self._labels)[: len(codes)].numpy() if self._labels else None
        self._drawn = self._epoch
        folder, tag = trainer_run_dir(trainer) / "images", f"epoch={self._epoch:03d}"
        figures: dict[str, Path] = {}
        if codes.shape[1] == 2:
            figures["latent_scatter"] = scatter_codes(codes, labels, "codes", folder / f"latent_scatter_{tag}.png")
            grid = self._decode_grid(pl_module, codes)
            if grid is not None:
                figures["latent_grid"] = save_png(grid, folder / f"latent_grid_{tag}.png")
        elif codes.shape[1] > 2 and len(codes) >= 3:
            from sklearn.decomposition import PCA

            pca = PCA(n_components=2).fit(codes)
            explained = 100 * pca.explained_variance_ratio_.sum()
            figures["latent_pca"] = scatter_codes(
                pca.transform(codes), labels, f"PCA ({explained:.0f}% of variance)", folder / f"latent_pca_{tag}.png"
            )
            if self.tsne and len(codes) > 5:
                from sklearn.manifold import TSNE

                perplexity = float(min(30, (len(codes) - 1) // 3))
                points = TSNE(2, perplexity=perplexity, init="pca", random_state=self.seed).fit_transform(codes)
                figures["latent_tsne"] = scatter_codes(points, labels, "t-SNE", folder / f"latent_tsne_{tag}.png")
        for name, path in figures.items():
            image = torch.from_numpy(np.asarray(plt.imread(path))[..., :3].copy()).permute(2, 0, 1).float()
            log_image(trainer, f"val/{name}", image, caption=tag)

    def _decode_grid(self, pl_module: L.LightningModule, codes: np.ndarray) -> torch.Tensor | None:
        lo, hi = np.percentile(codes, 1, axis=0), np.percentile(codes, 99, axis=0)
        xs = torch.linspace(float(lo[0]), float(hi[0]), self.grid_size)
        ys = torch.linspace(float(hi[1]), float(lo[1]), self.grid_size)  # top row = high values
        z = torch.stack(torch.meshgrid(ys, xs, indexing="ij")[::-1], dim=-1).reshape(-1, 2)  # (G*G, 2): (x, y)
        try:
            with evaluating(pl_module):
                images = pl_module.to_pixels(pl_module.decode(z.to(pl_module.device)))
        except ValueError as err:  # e.g. a conditional model without a label
            rank_zero_warn(f"LatentViews: no decoding grid for {type(pl_module).__name__}: {err}")
            return None
        return make_grid(images.cpu(), nrow=self.grid_size, padding=1, pad_value=1.0)
