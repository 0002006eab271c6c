"""Profile of the whole disentanglement suite, before and after GridCodes, in one run: wall, CPU, images.

For each subject and preset it runs

- **before**: the straightforward computation kept callable as the reference: every draw rendered and
  encoded when drawn (``cache=None``), DCI's factors one at a time (``n_jobs=1``);
- **after**: ``evaluate_representation`` as it ships (each distinct grid image encoded once, DCI's
  factors in parallel processes);

and prints each metric's wall and CPU seconds (user + system of this process and its DCI workers), the
factor rows it asked for and the images it rendered and encoded, the before/after CPU ratio, the suite's
peak RSS, and the largest difference between the two runs' scores. Subjects:

- ``true_factors``: the 10-d code of ``benchmark_disentanglement.py`` on ``FactorGrid`` (no rendering:
  the metrics' own cost);
- ``quickstart``: the quickstart's β-VAE (configs/quickstart.yaml, 32 px) on the shapes grid;
- ``study64``: the study's 64-px network (configs/shapes_betavae.yaml) on the shapes grid.

Models are seeded, untrained nets unless ``--quickstart-ckpt`` / ``--study-ckpt`` names a checkpoint: the
cost does not depend on the weights (the scores do). Each subject's "before" and "after" run in the same
process on the same machine, so their ratio is the honest figure on a shared machine; wall time there is
inflated by the other processes, CPU time is not.

    python scripts/profile_scoring.py                                   # everything (hours before, on 2 cores)
    python scripts/profile_scoring.py --subjects quickstart --presets fast
    python scripts/profile_scoring.py --no-before                      # the new path only
    python scripts/profile_scoring.py --count-only                     # images only (draws, no encoding)
"""

from __future__ import annotations

import argparse  # a benchmark script, not a betavae command: plain argparse is enough here
import resource
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from betavae.disentanglement import (
    FactorGrid,
    Preset,
    betavae_score,
    evaluate_codes,
    evaluate_representation,
    factorvae_score,
    model_representation,
    sample_codes,
)
from betavae.disentanglement.grid_codes import GridCodes
from betavae.disentanglement.progress import CostRecorder, MetricCost, cpu_seconds, stage

SUBJECTS = ("true_factors", "quickstart", "study64")
STAGES = (
    "sampling codes",
    "dci",
    "mig",
    "sap",
    "modularity",
    "explicitness",
    "factorvae_score",
    "betavae_score",
)


class Counted:
    """A representation that counts the images it encodes."""

    def __init__(self, represent: Callable[[torch.Tensor], np.ndarray]) -> None:
        self.represent = represent
        self.images = 0

    def __call__(self, images: torch.Tensor) -> np.ndarray:
        self.images += len(images)
        return self.represent(images)


class ReferenceRecorder(CostRecorder):
    """``CostRecorder`` for the reference path: images counted by the representation, not a cache."""

    def __init__(self, counted: Counted) -> None:
        super().__init__()
        self.counted = counted

    def _counts(self) -> tuple[int, int]:
        return self.counted.images, self.counted.images


def reference_suite(data: Any, represent: Counted, p: Preset, seed: int, recorder: CostRecorder) -> dict[str, float]:
    """Today's computation before GridCodes: each draw encoded when drawn, DCI one factor at a time."""
    total = p.num_train + p.num_test
    with stage(recorder, "sampling codes", total):
        codes, factors = sample_codes(data, represent, total, np.random.default_rng(seed))
    scores = evaluate_codes(codes, factors, p, seed, n_jobs=1, progress=recorder)
    with stage(recorder, "factorvae_score"):
        scores["factorvae_score"] = factorvae_score(
            data, represent, p.batch_size, p.factorvae_train, p.factorvae_eval, p.factorvae_variance, seed=seed
        )
    with stage(recorder, "betavae_score"):
        scores["betavae_score"] = betavae_score(
            data, represent, p.batch_size, p.betavae_train, p.betavae_eval, seed=seed
        )
    return scores


def subject(name: str, args: argparse.Namespace) -> tuple[Any, Callable[[torch.Tensor], np.ndarray], str]:
    """(ground-truth data, representation, description) of a subject."""
    if name == "true_factors":
        sys.path.insert(0, "scripts")
        from benchmark_disentanglement import benchmark_representation

        grid = FactorGrid()
        return grid, benchmark_representation(grid), "true factors, FactorGrid (no rendering)"
    from betavae.data import ShapesDataModule
    from betavae.models import BetaVAE

    if name == "quickstart":
        size, hidden, ckpt = 32, [16, 16, 32, 32], args.quickstart_ckpt
        extra = {"architecture": "burgess"}
    else:
        size, hidden, ckpt = 64, [16, 32, 64, 64], args.study_ckpt
        extra = {}
    data = ShapesDataModule(image_size=size, channels=1)
    if ckpt:
        model = BetaVAE.load_from_checkpoint(ckpt, map_location="cpu")
        what = f"checkpoint {ckpt}"
    else:
        torch.manual_seed(0)
        model = BetaVAE(
            in_channels=1, image_size=size, latent_dim=10, hidden_channels=hidden, likelihood="bce", **extra
        )
        what = "seeded untrained net (cost only)"
    return data, model_representation(model), f"{name}: {size} px shapes grid, {what}"


def count_only(p: Preset, seed: int) -> tuple[int, int]:
    """(rows drawn, distinct images among them) of the whole suite on the dSprites-sized grid, no model.

    The draws depend only on the preset and the seed, so a free representation (the factor indices
    themselves) draws the same rows as any model; DCI and the other estimators draw no images.
    """
    grid = FactorGrid()

    def free(images: torch.Tensor) -> np.ndarray:
        return grid.factors_of(images).astype(np.float32)

    cache = GridCodes(grid, free)
    sample_codes(grid, free, p.num_train + p.num_test, np.random.default_rng(seed), cache=cache)
    factorvae_score(grid, free, p.batch_size, p.factorvae_train, p.factorvae_eval, p.factorvae_variance,
                    seed=seed, cache=cache)  # fmt: skip
    betavae_score(grid, free, p.batch_size, p.betavae_train, p.betavae_eval, seed=seed, cache=cache)
    return cache.requested, cache.rendered


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--subjects", nargs="+", default=list(SUBJECTS), choices=SUBJECTS)
    parser.add_argument("--presets", nargs="+", default=["default", "fast"], choices=["default", "fast"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-before", action="store_true", help="skip the reference (old) path")
    parser.add_argument("--count-only", action="store_true", help="only the images each path encodes")
    parser.add_argument("--quickstart-ckpt", default=None)
    parser.add_argument("--study-ckpt", default=None)
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))

    if args.count_only:
        print(row(["preset", "grid images", "rows drawn (before: encoded)", "distinct (after: encoded)", "ratio"]))
        print("|---|---|---|---|---|")
        for name in args.presets:
            p = Preset.named(name)
            drawn, distinct = count_only(p, args.seed)
            print(row([name, "737,280", f"{drawn:,}", f"{distinct:,}", f"{drawn / distinct:.2f}"]))
        return 0

    print(row(["subject", "preset", "metric", "before wall s", "before CPU s", "before images",
               "after wall s", "after CPU s", "after images", "CPU before/after"]))  # fmt: skip
    print("|" + "---|" * 10)
    status = 0
    for name in args.subjects:
        data, represent, what = subject(name, args)
        print(f"# {what}", file=sys.stderr, flush=True)
        for preset in args.presets:
            p = Preset.named(preset)
            before: dict[str, MetricCost] = {}
            old_scores: dict[str, float] | None = None
            if not args.no_before:
                counted = Counted(represent)
                recorder = ReferenceRecorder(counted)
                start = (time.perf_counter(), cpu_seconds())
                old_scores = reference_suite(data, counted, p, args.seed, recorder)
                before = recorder.costs
                before["suite"] = MetricCost(
                    time.perf_counter() - start[0], cpu_seconds() - start[1], counted.images, counted.images
                )
                print(f"  {preset} before: {before['suite']}", file=sys.stderr, flush=True)
            recorder = CostRecorder()
            start = (time.perf_counter(), cpu_seconds())
            scores = evaluate_representation(data, represent, p, args.seed, progress=recorder)
            after = recorder.costs
            after["suite"] = MetricCost(
                time.perf_counter() - start[0],
                cpu_seconds() - start[1],
                recorder.cache.requested,
                recorder.cache.rendered,
            )
            print(f"  {preset} after: {after['suite']}", file=sys.stderr, flush=True)
            for stage_name in (*STAGES, "suite"):
                b, a = before.get(stage_name), after[stage_name]
                cells = [name, preset, stage_name]
                cells += [f"{b.wall:.1f}", f"{b.cpu:.1f}", f"{b.encoded:,}"] if b else ["", "", ""]
                cells += [f"{a.wall:.1f}", f"{a.cpu:.1f}", f"{a.encoded:,}"]
                cells += [f"{b.cpu / a.cpu:.1f}x" if b and a.cpu > 0.05 else ""]
                print(row(cells), flush=True)
            if old_scores is not None:
                diff = max(abs(scores[k] - old_scores[k]) for k in scores)
                print(f"{name} {preset}: max |after - before| over the 9 scores = {diff:.2e}", flush=True)
                status = status or int(diff > 1e-6)
    print(f"peak RSS of this process: {peak_rss_mb():.0f} MB")
    return status


if __name__ == "__main__":
    sys.exit(main())
