"""The study's traversal figure: the median run of each of two settings, side by side (issue 20, item 4).

For each setting (a run name without its ``_s<seed>`` suffix, e.g. ``shapes_betavae_b1``) the runs of every
seed under ``STUDY/runs/`` that have been evaluated (``version_0/evaluation/last.json``) are ranked by a metric
(MIG by default) and the median one is chosen (the lower middle for an even count). Each chosen run is
traversed with ``python -m betavae traverse`` (its ``--top_k`` dimensions by KL over [-3, 3], the first
validation image as the reference, row captions naming the factor each dimension predicts best), and the two
figures are drawn side by side under their setting, seed and metric, into one PNG.

    python scripts/study_traversals.py runs/disentanglement_study_cpu shapes_betavae_b1 shapes_betavae_b8 \
        --output docs/images/study_cpu/traversal_beta1_vs_beta8.png
"""

from __future__ import annotations

import argparse  # a figure script, not a betavae command
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.image as mpimg  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402


def evaluated_runs(study: Path, setting: str, metric: str) -> list[tuple[float, int, Path]]:
    """``(metric, seed, run folder)`` of every evaluated seed of ``setting``, sorted by the metric."""
    found = []
    for run in sorted((study / "runs").glob(f"{setting}_s*")):
        seed = re.fullmatch(rf"{re.escape(setting)}_s(\d+)", run.name)
        record = run / "version_0" / "evaluation" / "last.json"
        if seed is None or not record.is_file():
            continue
        value = json.loads(record.read_text()).get(metric)
        if value is not None:
            found.append((float(value), int(seed.group(1)), run))
    return sorted(found)


def median_run(study: Path, setting: str, metric: str) -> tuple[float, int, Path, int]:
    """The median run of ``setting`` by ``metric``: ``(value, seed, folder, number of seeds)``."""
    runs = evaluated_runs(study, setting, metric)
    if not runs:
        sys.exit(
            f"study_traversals: no evaluated run of {setting} under {study / 'runs'} (expected "
            f"{setting}_s<seed>/version_0/evaluation/last.json with {metric!r})"
        )
    value, seed, folder = runs[(len(runs) - 1) // 2]
    return value, seed, folder, len(runs)


def traverse(run: Path, top_k: int, out: Path) -> Path:
    """Run ``betavae traverse`` on the run's ``last.ckpt``; the PNG it wrote."""
    ckpt = run / "version_0" / "checkpoints" / "last.ckpt"
    command = [
        sys.executable,
        "-m",
        "betavae",
        "traverse",
        "--ckpt_path",
        str(ckpt),
        "--top_k",
        str(top_k),
        "--output_dir",
        str(out),
    ]
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    pngs = sorted(out.glob("traversal_*.png"))
    if not pngs:
        sys.exit(f"study_traversals: `{' '.join(command)}` wrote no traversal_*.png into {out}")
    return pngs[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("study", type=Path, help="the study's --out folder (with runs/)")
    parser.add_argument("left", help="setting drawn on the left, e.g. shapes_betavae_b1")
    parser.add_argument("right", help="setting drawn on the right, e.g. shapes_betavae_b8")
    parser.add_argument("--metric", default="mig", help="the metric whose median run is shown (default: mig)")
    parser.add_argument("--top_k", type=int, default=6, help="dimensions per traversal, by KL (default: 6)")
    parser.add_argument("--output", type=Path, required=True, help="the PNG to write")
    args = parser.parse_args()

    panels = []
    with tempfile.TemporaryDirectory() as tmp:
        for setting in (args.left, args.right):
            value, seed, run, n = median_run(args.study, setting, args.metric)
            png = traverse(run, args.top_k, Path(tmp) / setting)
            title = f"{setting}: seed {seed}, the median of {n} by {args.metric} ({value:.3f})"
            panels.append((title, mpimg.imread(png)))
            print(f"{setting}: seed {seed} ({args.metric} {value:.3f}, median of {n}) <- {run}")
    widths = [image.shape[1] for _, image in panels]
    height = max(image.shape[0] for _, image in panels)
    fig, axes = plt.subplots(
        1,
        2,
        figsize=(sum(widths) / 100 + 0.4, height / 100 + 0.6),
        gridspec_kw={"width_ratios": widths},
        layout="constrained",
    )
    for ax, (title, image) in zip(axes, panels, strict=True):
        ax.imshow(image)
        ax.set_title(title, fontsize=9)
        ax.axis("off")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.output, dpi=100)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
