"""Figures shared by callbacks and commands: grids, loss curves, traversals, GIFs, bar, line and scatter charts
(matplotlib, Agg)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only; no display needed

import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from torchvision.utils import make_grid, save_image  # noqa: E402


def save_figure(fig: Any, path: str | Path, dpi: int = 110) -> Path:
    """Lay out ``fig``, write it to ``path`` (folders made as needed), close it; returns the path."""
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path


def image_rows(rows: Sequence[torch.Tensor], padding: int = 2) -> torch.Tensor:
    """Stack equally long batches of [0, 1] images (N, C, H, W) as the rows of one grid (3, H', W')."""
    n = rows[0].shape[0]
    if any(r.shape[0] != n for r in rows):
        raise ValueError(f"all rows need the same number of images, got {[r.shape[0] for r in rows]}")
    images = torch.cat([r.detach().float().cpu() for r in rows])
    return make_grid(images, nrow=n, padding=padding, pad_value=1.0)


def square_grid(images: torch.Tensor, padding: int = 2) -> torch.Tensor:
    """[0, 1] images (N, C, H, W) in a near-square grid (3, H', W')."""
    nrow = max(1, int(round(images.shape[0] ** 0.5)))
    return make_grid(images.detach().float().cpu(), nrow=nrow, padding=padding, pad_value=1.0)


def save_png(grid: torch.Tensor, path: str | Path) -> Path:
    """Write a [0, 1] image (C, H, W) as PNG, creating the folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_image(grid, path)
    return path


def plot_curves(
    history: Mapping[str, Sequence[tuple[int, float]]], path: str | Path, parts: Sequence[str] | None = None
) -> Path:
    """One panel per loss part with its ``train/`` and ``val/`` curves against the optimizer step.

    ``history`` maps keys such as ``"train/recon"`` to (step, value) pairs. Training values are
    drawn thin with a running mean over; validation values as points joined by a line.
    """
    if parts is None:
        found = {key.split("/", 1)[1] for key in history if "/" in key}
        parts = [p for p in ("loss", "recon", "kl") if p in found] + sorted(found - {"loss", "recon", "kl"})
    parts = [p for p in parts if history.get(f"train/{p}") or history.get(f"val/{p}")]
    fig, axes = plt.subplots(1, max(1, len(parts)), figsize=(4.2 * max(1, len(parts)), 3.4), squeeze=False)
    for ax, part in zip(axes[0], parts, strict=False):  # no parts: one empty panel
        positive = True
        if train := history.get(f"train/{part}"):
            steps, values = zip(*train, strict=True)
            positive &= min(values) > 0
            ax.plot(steps, values, ".-" if len(values) < 30 else "-", color="tab:blue", alpha=0.3, linewidth=0.8)
            window = max(1, len(values) // 25)
            smooth = torch.tensor(values).unfold(0, window, 1).mean(1).tolist() if len(values) >= window else []
            ax.plot(steps[window - 1 :], smooth, color="tab:blue", label="train")
        if val := history.get(f"val/{part}"):
            steps, values = zip(*val, strict=True)
            positive &= min(values) > 0
            ax.plot(steps, values, "o-", color="tab:orange", markersize=3, label="val")
        if positive:
            ax.set_yscale("log")
        ax.set_title(part)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        ax.legend()
    return save_figure(fig, path)


def load_png(path: str | Path) -> torch.Tensor:
    """An image file as a [0, 1] RGB tensor (3, H, W) (to show a saved figure on W&B / TensorBoard)."""
    from PIL import Image
    from torchvision.transforms.v2.functional import pil_to_tensor

    with Image.open(path) as img:
        return pil_to_tensor(img.convert("RGB")).float() / 255


def traversal_figure(
    panels: Mapping[str, torch.Tensor],
    row_labels: Sequence[str],
    values: Sequence[float],
    path: str | Path,
    reference: torch.Tensor | None = None,
    title: str | None = None,
    xlabel: str = "value of the dimension",
) -> Path:
    """Latent traversals as one figure: a panel per starting code, a row per dimension, a column per value.

    ``panels`` maps a panel title to [0, 1] images (k, S, C, H, W) (k dimensions, S values); rows are
    labelled with ``row_labels`` and columns with ``values``. ``reference`` (N, C, H, W), e.g. the input
    over its reconstruction, is drawn in a narrow column on the left. Images are shown at least at
    their pixel size.
    """
    first = next(iter(panels.values()))
    k, s, _, h, w = first.shape
    if len(row_labels) != k or len(values) != s:
        raise ValueError(f"{k} rows x {s} columns need as many labels, got {len(row_labels)} and {len(values)}")
    pad, dpi = 2, 100
    scale = max(1, 48 // max(h, w))  # small images are drawn larger
    grids = [make_grid(p.flatten(0, 1).float().cpu(), nrow=s, padding=pad, pad_value=1.0) for p in panels.values()]
    columns = [make_grid(reference.float().cpu(), nrow=1, padding=pad, pad_value=1.0)] if reference is not None else []
    widths = [max(g.shape[2] * scale / dpi, 0.5 if i < len(columns) else 2.2) for i, g in enumerate(columns + grids)]
    height = max(g.shape[1] for g in columns + grids) * scale / dpi
    fig, axes = plt.subplots(
        1,
        len(widths),
        figsize=(sum(widths) + 1.4 + 0.3 * len(widths), height + 1.3 + (0.3 if title else 0.0)),
        gridspec_kw={"width_ratios": widths},
        squeeze=False,
        layout="constrained",
    )
    axes = list(axes[0])
    if reference is not None:
        ax = axes.pop(0)
        ax.imshow(columns[0].permute(1, 2, 0).numpy(), interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([pad + i * (h + pad) + h / 2 for i in range(len(reference))])
        ax.set_yticklabels((["input", "recon."] + [""] * len(reference))[: len(reference)], fontsize=8)
        ax.tick_params(length=0)
        ax.set_title("reference", fontsize=9)
    for i, (ax, name, grid) in enumerate(zip(axes, panels, grids, strict=True)):
        ax.imshow(grid.permute(1, 2, 0).numpy(), interpolation="nearest")
        ax.set_xticks([pad + j * (w + pad) + w / 2 for j in range(s)])
        ax.set_xticklabels([f"{v:g}" for v in values], fontsize=8)
        ax.set_yticks([pad + r * (h + pad) + h / 2 for r in range(k)])
        ax.set_yticklabels(list(row_labels) if i == 0 else [""] * k, fontsize=8)
        ax.tick_params(length=0)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel(xlabel, fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path


def traversal_frames(panels: Mapping[str, torch.Tensor], padding: int = 2) -> list[torch.Tensor]:
    """Animation frames of traversals (k, S, C, H, W): frame j shows value j of every row, one grid row
    per panel; the values run forward and back so the animation loops smoothly."""
    stacked = torch.stack(list(panels.values()))  # (P, k, S, C, H, W)
    k, s = stacked.shape[1:3]
    order = list(range(s)) + list(range(s - 2, 0, -1))
    return [
        make_grid(stacked[:, :, j].flatten(0, 1).float().cpu(), nrow=k, padding=padding, pad_value=1.0) for j in order
    ]


def save_gif(frames: Sequence[torch.Tensor], path: str | Path, duration_ms: int = 250) -> Path:
    """Write [0, 1] frames (C, H, W) as a looping animated GIF, creating the folder."""
    from PIL import Image

    if not frames:
        raise ValueError("save_gif needs at least one frame")
    images = [
        Image.fromarray((f.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).squeeze(-1).cpu().numpy()) for f in frames
    ]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    images[0].save(path, save_all=True, append_images=images[1:], duration=duration_ms, loop=0)
    return path


def bar_chart(
    groups: Sequence[str],
    series: Mapping[str, Sequence[float | None]],
    path: str | Path,
    ylabel: str,
    title: str | None = None,
) -> Path:
    """Grouped bars: one group per entry of ``groups`` (e.g. datasets), one bar per series (e.g. β)
    in each, labelled with its value; ``None`` values are left out."""
    n_series = max(1, len(series))
    width = 0.8 / n_series
    fig, ax = plt.subplots(figsize=(max(4.0, 1.1 * len(groups) * n_series + 1.5), 3.6))
    for i, (name, values) in enumerate(series.items()):
        xs = [g + (i - (n_series - 1) / 2) * width for g, v in enumerate(values) if v is not None]
        ys = [v for v in values if v is not None]
        bars = ax.bar(xs, ys, width=width * 0.95, label=name)
        ax.bar_label(bars, fmt="%.3g", fontsize=8)
    ax.set_xticks(range(len(groups)))
    ax.set_xticklabels(groups)
    ax.set_ylabel(ylabel)
    ax.margins(y=0.15)
    if title:
        ax.set_title(title)
    if series:
        ax.legend(fontsize=8)  # also for one series: it names the β
    ax.grid(axis="y", alpha=0.3)
    return save_figure(fig, path)


def line_chart(
    series: Mapping[str, Sequence[tuple[float, float]]],
    path: str | Path,
    xlabel: str,
    ylabel: str,
    title: str | None = None,
    log_x: bool = False,
) -> Path:
    """One line per series through its (x, y) points: every point drawn, the line through the mean y at
    each x (several runs at one β), in increasing x."""
    fig, ax = plt.subplots(figsize=(5.2, 3.6))
    for name, points in series.items():
        if not points:
            continue
        xs, ys = zip(*points, strict=True)
        line = ax.plot(sorted(set(xs)), [_mean_at(points, x) for x in sorted(set(xs))], "-", label=name)[0]
        ax.plot(xs, ys, "o", color=line.get_color(), markersize=4)
    if log_x:
        ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    if series:
        ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return save_figure(fig, path)


def median_chart(
    series: Mapping[str, Sequence[tuple[float, float, float, float]]],
    path: str | Path,
    xlabel: str,
    ylabel: str,
    title: str | None = None,
    log_x: bool = False,
    references: Mapping[str, tuple[float, float, float]] | None = None,
) -> Path:
    """Medians over seeds with their spread: one line per series through its points (x, median, low, high),
    in increasing x, each point with an error bar from low to high (none when they are equal: one seed);
    each reference (median, low, high), a setting without x (a comparison model at its weights), is a dashed
    horizontal line at its median over a shaded band from low to high."""
    fig, ax = plt.subplots(figsize=(5.6, 3.8))
    for name, points in series.items():
        if not points:
            continue
        xs, ys, lows, highs = zip(*sorted(points), strict=True)
        yerr = [[y - lo for y, lo in zip(ys, lows, strict=True)], [hi - y for y, hi in zip(ys, highs, strict=True)]]
        ax.errorbar(xs, ys, yerr=yerr, fmt="o-", markersize=4, capsize=3, label=name)
    for name, (median, low, high) in (references or {}).items():
        line = ax.axhline(median, linestyle="--", linewidth=1, label=name)
        if high > low:
            ax.axhspan(low, high, color=line.get_color(), alpha=0.12)
    if log_x:
        ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    if series or references:
        ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    return save_figure(fig, path)


def _mean_at(points: Sequence[tuple[float, float]], x: float) -> float:
    ys = [py for px, py in points if px == x]
    return sum(ys) / len(ys)


def labelled_scatter(
    points: Sequence[tuple[float, float, str, str]],
    path: str | Path,
    xlabel: str,
    ylabel: str,
    title: str | None = None,
) -> Path:
    """Points (x, y, label, group): each point annotated with its label, coloured by its group (legend)."""
    fig, ax = plt.subplots(figsize=(5.6, 4.0))
    groups = list(dict.fromkeys(group for *_, group in points))
    for group in groups:
        mine = [(x, y, label) for x, y, label, g in points if g == group]
        xs, ys, labels = zip(*mine, strict=True)
        ax.scatter(xs, ys, label=group, s=24)
        for x, y, label in mine:
            ax.annotate(label, (x, y), xytext=(4, 3), textcoords="offset points", fontsize=7)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.margins(x=0.25, y=0.15)  # room for the labels right of the points
    if title:
        ax.set_title(title)
    if len(groups) > 1:
        ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return save_figure(fig, path)
