"""Shapes rendering speed, before vs after in one run, and a bit-for-bit check of the two.

"before" is ``betavae/data/shapes.py`` as committed at ``--baseline`` (read with ``git show``, so the very
code that rendered before), "after" the working tree's ``render_shapes``. Both render the same seeded factor
rows (uniform over the shapes grid) with ``--threads`` torch threads, alternately, ``--repeats`` times; the
best CPU (user+sys of this process) and wall time of each is kept. Wall time is inflated on a shared machine:
CPU time is the figure.

    nice -n 5 python scripts/benchmark_render.py --images 4096 --sizes 32 64
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from betavae.data.shapes import factor_values_of, render_shapes, sample_factor_indices


def load_baseline(commit: str):
    """The module ``betavae/data/shapes.py`` as of ``commit``."""
    source = subprocess.run(
        ["git", "show", f"{commit}:betavae/data/shapes.py"], check=True, capture_output=True, text=True
    ).stdout
    path = Path(tempfile.mkdtemp()) / "shapes_baseline.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("shapes_baseline", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def timed(fn):
    cpu, wall = time.process_time(), time.perf_counter()
    out = fn()
    return out, time.process_time() - cpu, time.perf_counter() - wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=4096)
    parser.add_argument("--sizes", type=int, nargs="+", default=[32, 64])
    parser.add_argument("--supersample", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--baseline", default="b285a69", help="commit of the old renderer")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    old = load_baseline(args.baseline)
    factors = factor_values_of(sample_factor_indices(args.images, args.seed))  # (N, 5)
    print(f"{args.images} images, supersample {args.supersample}, {args.threads} thread(s), baseline {args.baseline}")
    print(
        "| size | before img/s (CPU) | after img/s (CPU) | CPU ratio | before img/s (wall) | after img/s (wall) "
        "| wall ratio | identical |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for size in args.sizes:
        best = {"before": [float("inf")] * 2, "after": [float("inf")] * 2}
        identical = True
        for _ in range(args.repeats):
            a, cpu_a, wall_a = timed(lambda s=size: old.render_shapes(factors, s, args.supersample))
            b, cpu_b, wall_b = timed(lambda s=size: render_shapes(factors, s, args.supersample))
            identical &= torch.equal(a, b)
            best["before"] = [min(best["before"][0], cpu_a), min(best["before"][1], wall_a)]
            best["after"] = [min(best["after"][0], cpu_b), min(best["after"][1], wall_b)]
        (cpu_a, wall_a), (cpu_b, wall_b) = best["before"], best["after"]
        n = args.images
        print(
            f"| {size} | {n / cpu_a:,.0f} | {n / cpu_b:,.0f} | {cpu_a / cpu_b:.2f} | {n / wall_a:,.0f} "
            f"| {n / wall_b:,.0f} | {wall_a / wall_b:.2f} | {'yes' if identical else 'NO'} |"
        )
        if not identical:
            sys.exit(f"renderers differ at {size} px")


if __name__ == "__main__":
    main()
