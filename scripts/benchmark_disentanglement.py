"""Speed of the disentanglement metrics at the default and fast presets, and what the fast preset changes.

The codes are 10-d and deterministic in the image, on the dSprites grid (3 x 6 x 40 x 32 x 32) of
``FactorGrid`` (rendering costs nothing, so this times the metrics, not a model):

- dims 0-4: each factor scaled to [0, 1] plus a fixed per-image perturbation (σ 0.1), with pos_x and
  pos_y rotated into each other by 40° (nearly mixed: the scores are neither 0 nor 1);
- dims 5-7: active noise, N(0, 1); dims 8-9: collapsed, N(0, 0.01²) (pruned by the FactorVAE score).

Each metric is timed on its own at the preset's sample sizes (wall and process CPU time, since the
machine may be shared), on the same draws as ``evaluate_representation`` (checked for the fast preset
against one full ``evaluate_representation`` call, which is also the timed suite). ``--fast-seeds``
repeats the fast preset with other seeds, so the fast − default difference can be read against the
fast preset's own spread.

    python scripts/benchmark_disentanglement.py                    # default and fast, 3 fast seeds
    python scripts/benchmark_disentanglement.py --presets fast     # the fast preset only

Target: the whole fast suite in <= 60 s on 2 CPU cores (exit status 1 when missed). The check uses the
suite's process CPU time, since the machine may be shared: the estimators are single-threaded, so on an
idle machine its wall time is about its CPU time (both are printed).
"""

from __future__ import annotations

import argparse  # a benchmark script, not a betavae command: plain argparse is enough here
import statistics
import sys
import time
from collections.abc import Callable

import numpy as np
import torch

from betavae.disentanglement import (
    ALL_KEYS,
    FactorGrid,
    Preset,
    betavae_score,
    dci,
    evaluate_representation,
    explicitness,
    factorvae_score,
    mig,
    modularity,
    sample_codes,
    sap,
)
from betavae.disentanglement.arrays import split_indices, subsample

TARGET_S = 60.0


def benchmark_representation(grid: FactorGrid, seed: int = 0) -> Callable[[torch.Tensor], np.ndarray]:
    """The 10-d code of the module docstring; its noise is a fixed table indexed by the factor combination."""
    sizes = np.array(grid.factor_sizes)
    table = np.random.default_rng(seed).standard_normal((int(np.prod(sizes)), 10), dtype=np.float32)
    c, s = np.cos(np.radians(40)), np.sin(np.radians(40))

    def represent(images: torch.Tensor) -> np.ndarray:
        factors = grid.factors_of(images)  # (n, 5)
        noise = table[np.ravel_multi_index(factors.T, sizes)]  # (n, 10), the same for the same image
        x = factors / (sizes - 1) + 0.1 * noise[:, :5]
        x[:, 3], x[:, 4] = c * x[:, 3] - s * x[:, 4], s * x[:, 3] + c * x[:, 4]
        return np.concatenate([x, noise[:, 5:8], 0.01 * noise[:, 8:]], axis=1)

    return represent


def timed(fn: Callable[[], object]) -> tuple[object, float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    value = fn()
    return value, time.perf_counter() - wall, time.process_time() - cpu


def per_metric(grid: FactorGrid, preset: Preset, seed: int) -> tuple[dict[str, float], dict[str, tuple[float, float]]]:
    """Scores {key: score} and times {job: (wall s, CPU s)} of each metric alone, on the draws that
    ``evaluate_representation`` makes with the same preset and seed."""
    represent = benchmark_representation(grid)
    rng = np.random.default_rng(seed)
    total = preset.num_train + preset.num_test
    (codes, factors), *sampling = timed(lambda: sample_codes(grid, represent, total, rng))
    times = {"sampling codes": tuple(sampling)}
    fraction = preset.num_train / total
    train, _ = split_indices(len(codes), fraction, seed)
    few = subsample(len(codes), preset.dci_train + preset.dci_test, seed)
    dci_fraction = preset.dci_train / (preset.dci_train + preset.dci_test)
    p = preset
    jobs = {
        "mig": lambda: mig(codes[train], factors[train], p.num_bins),
        "sap": lambda: sap(codes, factors, fraction, seed),
        "dci": lambda: dci(codes[few], factors[few], dci_fraction, seed),
        "modularity": lambda: modularity(codes[train], factors[train], p.num_bins),
        "explicitness": lambda: explicitness(codes, factors, fraction, seed),
        "factorvae_score": lambda: factorvae_score(
            grid, represent, p.batch_size, p.factorvae_train, p.factorvae_eval, p.factorvae_variance, seed=seed
        ),
        "betavae_score": lambda: betavae_score(
            grid, represent, p.batch_size, p.betavae_train, p.betavae_eval, seed=seed
        ),
    }
    scores = {}
    for name, job in jobs.items():
        value, wall, cpu = timed(job)
        times[name] = (wall, cpu)
        scores.update({f"dci_{k}": v for k, v in value.items()} if isinstance(value, dict) else {name: value})
        print(f"  {name}: {wall:.1f} s wall, {cpu:.1f} s CPU", file=sys.stderr, flush=True)
    return scores, times


def job_of(key: str) -> str:
    return "dci" if key.startswith("dci_") else key


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", nargs="+", default=["default", "fast"], choices=["default", "fast"])
    parser.add_argument("--fast-seeds", type=int, default=3, help="fast-preset runs (seeds 0..n-1) for the spread")
    args = parser.parse_args()
    grid = FactorGrid()
    scores, times = {}, {}
    for name in args.presets:
        print(f"{name} preset, seed 0 ...", file=sys.stderr, flush=True)
        scores[name], times[name] = per_metric(grid, Preset.named(name), seed=0)

    status = 0
    suite: tuple[float, float] | None = None
    spread: dict[str, list[float]] = {key: [] for key in ALL_KEYS}
    if "fast" in args.presets:
        print("fast suite (evaluate_representation), seed 0 ...", file=sys.stderr, flush=True)
        first, *suite = timed(lambda: evaluate_representation(grid, benchmark_representation(grid), "fast", seed=0))
        if first != scores["fast"]:
            print(f"per-metric scores {scores['fast']} differ from the suite's {first}", file=sys.stderr)
            status = 1
        runs = [first]
        for seed in range(1, args.fast_seeds):
            print(f"fast suite, seed {seed} ...", file=sys.stderr, flush=True)
            runs.append(evaluate_representation(grid, benchmark_representation(grid), "fast", seed=seed))
        spread = {key: [run[key] for run in runs] for key in ALL_KEYS}

    both = set(args.presets) == {"default", "fast"}
    columns = ["metric"]
    for p in args.presets:
        columns += [f"{p} wall s", f"{p} CPU s", f"{p} score"]
    columns += ["fast − default"] if both else []
    columns += [f"fast mean ± sd, {len(spread['mig'])} seeds"] if "fast" in args.presets and args.fast_seeds > 1 else []
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    rows = ["sampling codes", *ALL_KEYS]
    for key in rows:
        cells = [key]
        for p in args.presets:
            once = key in ("dci_completeness", "dci_informativeness")  # timed with dci_disentanglement
            cells += ["", ""] if once else [f"{t:.1f}" for t in times[p][job_of(key)]]
            cells.append(f"{scores[p][key]:.3f}" if key in scores[p] else "")
        if both:
            cells.append(f"{scores['fast'][key] - scores['default'][key]:+.3f}" if key in scores["fast"] else "")
        if "fast" in args.presets and args.fast_seeds > 1:
            values = spread.get(key)
            cells.append(f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}" if values else "")
        print("| " + " | ".join(cells) + " |")
    for p in args.presets:
        wall, cpu = (sum(t[i] for t in times[p].values()) for i in (0, 1))
        print(f"{p}: all metrics one by one {wall:.1f} s wall, {cpu:.1f} s CPU")
    if suite is not None:
        verdict = "OK" if suite[1] <= TARGET_S else "FAIL"
        print(
            f"fast suite (evaluate_representation): {suite[0]:.1f} s wall, {suite[1]:.1f} s CPU, "
            f"target <= {TARGET_S:.0f} s CPU: {verdict}"
        )
        status = status or int(suite[1] > TARGET_S)
    return status


if __name__ == "__main__":
    sys.exit(main())
