"""Reference scores of the disentanglement metrics on the shapes grid: the true factors, and noise.

A model's scores mean little without the two ends of the scale on the same data and preset. This script
runs ``evaluate_representation`` (every metric, as ``evaluate`` and the ``DisentanglementMetrics``
callback do) on the factor grid of ``ShapesDataModule`` (shape 3, scale 6, orientation 40, pos_x 32,
pos_y 32) for two representations:

- **true factors**: the code is the five factor indices themselves (as floats): a perfectly
  disentangled, noiseless encoder, the top of each scale (MIG stays below 1 since 20 histogram bins
  cannot resolve 40 orientations or 32 positions);
- **noise**: a 10-d N(0, I) code that is a fixed function of the image (a table indexed by the factor
  combination) but carries nothing about the factors: the bottom of each scale (chance level of the
  BetaVAE and FactorVAE scores: 1/5).

The grid is ``betavae.disentanglement.FactorGrid`` with the shapes' factor sizes and names: the metrics
see only codes and factors, so rendering the shapes would change nothing but the time. Prints a Markdown
table with each metric and the wall and CPU time of each row.

    python scripts/disentanglement_reference.py                     # disentanglement_lib's sample sizes
    python scripts/disentanglement_reference.py --preset fast       # the callback's sizes
"""

from __future__ import annotations

import argparse  # a script, not a betavae command: plain argparse is enough here
import json
import time
from collections.abc import Callable

import numpy as np
import torch

from betavae.data import ShapesDataModule
from betavae.disentanglement import FactorGrid, evaluate_representation
from betavae.evaluation.tables import DISENTANGLEMENT_COLUMNS, markdown


def true_factors(grid: FactorGrid) -> Callable[[torch.Tensor], np.ndarray]:
    """Images → their factor indices (n, K) as floats."""
    return lambda images: grid.factors_of(images).astype(np.float64)


def noise(grid: FactorGrid, dims: int = 10, seed: int = 0) -> Callable[[torch.Tensor], np.ndarray]:
    """Images → a fixed N(0, I) code (n, ``dims``) per factor combination, independent of the factors."""
    sizes = np.array(grid.factor_sizes)
    table = np.random.default_rng(seed).standard_normal((int(np.prod(sizes)), dims))
    return lambda images: table[np.ravel_multi_index(grid.factors_of(images).T, sizes)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="default", choices=("default", "fast"), help="Sample sizes.")
    parser.add_argument("--seed", type=int, default=0, help="Seed of every draw, split and estimator.")
    parser.add_argument("--json", default=None, help="Also write the scores and times to this file.")
    args = parser.parse_args()

    grid = FactorGrid(ShapesDataModule.factor_sizes, ShapesDataModule.factor_names)
    results = {}
    for name, represent in (("true factors", true_factors(grid)), ("noise", noise(grid))):
        wall, cpu = time.perf_counter(), time.process_time()
        scores = evaluate_representation(grid, represent, args.preset, args.seed)
        results[name] = {**scores, "wall_s": time.perf_counter() - wall, "cpu_s": time.process_time() - cpu}
        print(f"{name}: {results[name]['wall_s']:.0f} s wall, {results[name]['cpu_s']:.0f} s CPU", flush=True)

    headers = ["code", *(header for header, _ in DISENTANGLEMENT_COLUMNS), "wall s", "CPU s"]
    rows = [
        [name, *(f"{r[key]:.3f}" for _, key in DISENTANGLEMENT_COLUMNS), f"{r['wall_s']:.0f}", f"{r['cpu_s']:.0f}"]
        for name, r in results.items()
    ]
    print(f"\nshapes factor grid {'×'.join(map(str, grid.factor_sizes))}, preset {args.preset}, seed {args.seed}\n")
    print(markdown(headers, rows))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"preset": args.preset, "seed": args.seed, "results": results}, f, indent=2)


if __name__ == "__main__":
    main()
