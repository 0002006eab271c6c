"""Draw the W&B β-comparison dashboard's main panels with matplotlib, from runs on disk (no W&B needed).

The panels and their keys are the dashboard's own (``betavae.dashboard.sections``, keys from
``betavae.wandb_keys``): β against FID, SSIM, PSNR, KL and MIG (each run's last logged value, W&B's summary),
PSNR against MIG, the scores over epochs, and the traversals in β order. Values come from each run's
``metrics.csv`` (the same keys its W&B run logs) and ``config.yaml`` (β and the dataset, as in the W&B config);
the traversal images from ``images/traversal_epoch=EEE.png``.

    python scripts/dashboard_figure.py --train --betas 1 4 16 --out docs/images/wandb_dashboard.png
    python scripts/dashboard_figure.py --runs runs/b1/version_0 runs/b4/version_0 --out dashboard.png

``--train`` first trains one small run per β on generated shapes, in parallel (the quickstart for 3 epochs of
30 steps, FID on 100 samples of the stand-in ``PixelFeatures`` network, the seven sample-based disentanglement
metrics every epoch under the ``fast`` preset). Its numbers show what the panels look like; they are not
results.
"""

from __future__ import annotations

import argparse
import csv
import subprocess
import sys
import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import yaml  # noqa: E402

from betavae.dashboard import sections  # noqa: E402
from betavae.run_labels import run_keys  # noqa: E402
from betavae.wandb_keys import BETA, DATASET, EPOCH  # noqa: E402


def train(betas: list[float], root: Path, epochs: int, steps: int) -> list[Path]:
    """One small quickstart run per β under ``root``, all at once (one process each); returns their folders."""
    procs, runs = [], []
    for beta in betas:
        name = f"beta{beta:g}"
        args = [
            sys.executable,
            "-m",
            "betavae",
            "fit",
            "--config=quickstart.yaml",
            f"--model.init_args.beta={beta}",
            "--data.init_args.num_images=3000",
            f"--trainer.max_epochs={epochs}",
            f"--trainer.limit_train_batches={steps}",
            "--trainer.limit_val_batches=2",
            "--trainer.logger=lightning.pytorch.loggers.CSVLogger",
            f"--trainer.logger.save_dir={root}",
            f"--trainer.logger.name={name}",
            "--progress_bar.refresh_rate=0",
            f"--traversal.every_n_epochs={epochs}",
            "--traversal.top_k=5",
            "--grids.every_n_epochs=1000",
            "--fid.every_n_epochs=1",
            "--fid.num_samples=100",
            "--fid.feature_extractor=betavae.fid.PixelFeatures",
            "--disentanglement.every_n_epochs=1",
            "--disentanglement.interventions=false",
        ]
        procs.append(subprocess.Popen(args))
        runs.append(root / name / "version_0")
    for proc in procs:
        if proc.wait() != 0:
            raise SystemExit(f"a training run failed: {proc.args}")
    return runs


def read_run(run: Path) -> dict:
    """``{"config": {dataset, beta, ...}, "history": [{key: value}], "summary": {key: last value},
    "traversal": path or None}`` of a run folder."""
    config = yaml.safe_load((run / "config.yaml").read_text())
    model, data = config["model"], config["data"]
    keys = run_keys(model["class_path"], model.get("init_args") or {}, data["class_path"], data.get("init_args") or {})
    with (run / "metrics.csv").open() as f:
        history = [{k: float(v) for k, v in row.items() if v not in ("", None)} for row in csv.DictReader(f)]
    summary: dict[str, float] = {}
    for row in history:  # W&B's summary: the last value logged under each key
        summary.update(row)
    traversals = sorted((run / "images").glob("traversal_epoch=*.png"))
    return {"config": keys, "history": history, "summary": summary, "traversal": traversals[-1] if traversals else None}


def draw(runs: list[dict], out: Path) -> Path:
    """The figure: the scatter panels, the curves and the traversals, as the dashboard lays them out."""
    runs = sorted(runs, key=lambda r: r["config"][BETA])
    panels = dict(sections())
    by_beta = [p for p in panels["β against the scores"] if p.x.name == BETA]
    scatter = [p for p in by_beta if p.y.name in ("val/fid", "val/ssim", "val/psnr", "val/kl", "val/mig")]
    scatter += [p for p in panels["β against the scores"] if p.x.name == "val/mig"]  # the trade-off
    curves = [p for p in panels["Over training"] if p.y[0] in ("val/ssim", "val/kl", "val/mig")]
    n_plots = len(scatter) + len(curves)
    cols = 3
    shown = [r for r in runs if r["traversal"] is not None]
    rows = -(-n_plots // cols) + (1 if shown else 0)
    fig = plt.figure(figsize=(4.2 * cols, 3.3 * rows), layout="constrained")
    grid = fig.add_gridspec(rows, cols)
    colours = plt.get_cmap("viridis")
    colour = {r["config"][BETA]: colours(i / max(1, len(runs) - 1)) for i, r in enumerate(runs)}

    for i, panel in enumerate(scatter):
        ax = fig.add_subplot(grid[i // cols, i % cols])
        xs, ys, cs = [], [], []
        for run in runs:
            x = run["config"][BETA] if panel.x.name == BETA else run["summary"].get(panel.x.name)
            y = run["summary"].get(panel.y.name)
            if x is not None and y is not None:
                xs.append(x), ys.append(y), cs.append(colour[run["config"][BETA]])
        ax.scatter(xs, ys, c=cs, s=40)
        if panel.log_x:
            ax.set_xscale("log")
        ax.set_xlabel(panel.x.name), ax.set_ylabel(panel.y.name), ax.set_title(panel.title, fontsize=9)
    for j, panel in enumerate(curves, start=len(scatter)):
        ax = fig.add_subplot(grid[j // cols, j % cols])
        key = panel.y[0]
        for run in runs:
            points = [(row[EPOCH], row[key]) for row in run["history"] if key in row and EPOCH in row]
            if points:
                ax.plot(*zip(*points, strict=True), marker="o", color=colour[run["config"][BETA]])
        ax.set_xlabel(panel.x), ax.set_ylabel(key), ax.set_title(panel.title, fontsize=9)
    media = fig.add_subplot(grid[rows - 1, :]) if shown else None
    if media is None:  # no run has a traversal image yet
        return _save(fig, runs, colour, out)
    media.axis("off")
    media.set_title("Latent traversals, runs in β order (the dashboard's media panel)", fontsize=9)
    for k, run in enumerate(shown):
        inset = media.inset_axes((k / len(shown), 0, 1 / len(shown) - 0.01, 1))
        inset.imshow(plt.imread(run["traversal"]))
        inset.axis("off")
        inset.set_title(f"{run['config'][DATASET]}, β = {run['config'][BETA]:g}", fontsize=8)
    return _save(fig, runs, colour, out)


def _save(fig: plt.Figure, runs: list[dict], colour: dict, out: Path) -> Path:
    handles = [plt.Line2D([], [], marker="o", ls="", color=colour[b], label=f"β = {b:g}") for b in colour]
    fig.legend(handles=handles, loc="outside upper center", ncols=len(handles))
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", nargs="*", type=Path, default=[], help="Run folders (version_N) to draw.")
    parser.add_argument("--train", action="store_true", help="First train one small run per --betas.")
    parser.add_argument("--betas", nargs="+", type=float, default=[1.0, 4.0, 16.0])
    parser.add_argument("--root", type=Path, default=None, help="Where --train writes (default: a temp folder).")
    parser.add_argument("--epochs", type=int, default=3, help="Epochs of each --train run.")
    parser.add_argument("--steps", type=int, default=30, help="Training steps per epoch of each --train run.")
    parser.add_argument("--out", type=Path, default=Path("dashboard.png"))
    args = parser.parse_args()
    runs = list(args.runs)
    if args.train:
        runs += train(
            args.betas, args.root or Path(tempfile.mkdtemp(prefix="betavae-dashboard-")), args.epochs, args.steps
        )
    if not runs:
        parser.error("give --runs or --train")
    print(draw([read_run(r) for r in runs], args.out))


if __name__ == "__main__":
    main()
