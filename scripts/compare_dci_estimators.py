"""DCI under its two named estimators on the same codes: the three numbers, wall and CPU seconds.

DCI (Eastwood & Williams 2018, ICLR) fits one classifier per factor and reads its feature importances.
``"gbt"`` is disentanglement_lib's gradient-boosted trees (the default, the protocol's numbers);
``"random_forest"`` is the cheaper random forest of ``betavae.disentanglement.dci_classifier``. Both run
here on the same rows, split the same way, with the same seed, so what differs is the estimator alone.

The codes are ``scripts/benchmark_disentanglement.py``'s 10-d code on the dSprites grid of ``FactorGrid``
(3 x 6 x 40 x 32 x 32; five factor dimensions with noise σ 0.1, pos_x and pos_y rotated into each other by
40°, three noise and two collapsed dimensions): neither 0 nor 1 on any score. ``--codes true_factors``
scores the factors themselves plus N(0, 0.1²) noise instead. The default sizes are the default preset's
DCI sizes (10,000 training and 5,000 test points); gradient-boosted trees then cost ~350 s of CPU.

    python scripts/compare_dci_estimators.py                         # default preset sizes, both estimators
    python scripts/compare_dci_estimators.py --train 500 --test 250  # the fast preset's DCI sizes
"""

from __future__ import annotations

import argparse  # a benchmark script, not a betavae command: plain argparse is enough here
import sys
import time

import numpy as np

from betavae.disentanglement import DCI_ESTIMATORS, DEFAULT, FactorGrid, dci, sample_codes

KEYS = ("disentanglement", "completeness", "informativeness")


def codes_of(kind: str, grid: FactorGrid, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` codes (n, D) of ``kind`` and their factors (n, 5), drawn uniformly from ``grid`` (seeded)."""
    rng = np.random.default_rng(seed)
    if kind == "benchmark":
        sys.path.insert(0, "scripts")
        from benchmark_disentanglement import benchmark_representation

        return sample_codes(grid, benchmark_representation(grid), n, rng)
    factors = grid.sample_factors(n, rng)
    return factors + rng.normal(scale=0.1, size=factors.shape), factors


def timed_dci(
    codes: np.ndarray, factors: np.ndarray, fraction: float, seed: int, estimator: str, n_jobs: int
) -> tuple[dict[str, float], float, float]:
    """DCI's scores under ``estimator``, with the wall and CPU seconds (this process, all its threads)."""
    wall, cpu = time.perf_counter(), time.process_time()
    scores = dci(codes, factors, fraction, seed, estimator=estimator, n_jobs=n_jobs)
    return scores, time.perf_counter() - wall, time.process_time() - cpu


def table(results: dict[str, tuple[dict[str, float], float, float]]) -> str:
    """A Markdown table: a row per estimator, then the differences and the CPU ratio against ``gbt``."""
    lines = ["| estimator | DCI D | DCI C | DCI I | wall s | CPU s |", "|---|---|---|---|---|---|"]
    for name, (scores, wall, cpu) in results.items():
        lines.append(f"| {name} | " + " | ".join(f"{scores[k]:.3f}" for k in KEYS) + f" | {wall:.1f} | {cpu:.1f} |")
    if "gbt" in results:
        base, _, base_cpu = results["gbt"]
        for name, (scores, _, cpu) in results.items():
            if name != "gbt":
                diffs = " | ".join(f"{scores[k] - base[k]:+.3f}" for k in KEYS)
                lines.append(f"| {name} − gbt | {diffs} | | {base_cpu / cpu:.1f}x less CPU |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train", type=int, default=DEFAULT.dci_train, help="training points")
    parser.add_argument("--test", type=int, default=DEFAULT.dci_test, help="test points")
    parser.add_argument("--codes", choices=["benchmark", "true_factors"], default="benchmark")
    parser.add_argument("--estimators", nargs="+", choices=DCI_ESTIMATORS, default=list(DCI_ESTIMATORS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--n-jobs", type=int, default=1, help="factors fitted at once (dci's n_jobs)")
    args = parser.parse_args()
    grid = FactorGrid()
    codes, factors = codes_of(args.codes, grid, args.train + args.test, args.seed)
    fraction = args.train / (args.train + args.test)
    results = {}
    for name in args.estimators:
        print(f"{name} ...", file=sys.stderr, flush=True)
        results[name] = timed_dci(codes, factors, fraction, args.seed, name, args.n_jobs)
        print(f"  {results[name][1]:.1f} s wall, {results[name][2]:.1f} s CPU", file=sys.stderr, flush=True)
    print(f"{args.codes} codes, {args.train} / {args.test} points, seed {args.seed}, n_jobs {args.n_jobs}")
    print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
