"""Speed and memory of the factor-grid data modules (dSprites, 3D Shapes) on synthetic files of the real format.

The real files cannot be downloaded here, so this writes stand-ins with the real layout and size (by
default the full grids: 737,280 dSprites sprites, 480,000 3D Shapes scenes; ``--grid-fraction`` keeps a
leading fraction of the first factor's values for a quicker run) and measures, per dataset:

- the first setup (the decoded cache is built from the file) and a later one (the cache is reused),
- ``images_of`` on uniformly drawn factor rows (batches of 64 and of 10,000: the metrics' sizes),
- training batches through ``train_dataloader`` (batch 64, with 0 and 2 workers),
- for 3D Shapes, reading random batches straight from the h5 file (what the cache avoids),
- the peak resident memory of the process and the size of the cache file.

    python scripts/benchmark_factor_data.py                       # both, full size (writes ~7 GB in --workdir)
    python scripts/benchmark_factor_data.py --dataset dsprites
    python scripts/benchmark_factor_data.py --dataset shapes3d --grid-fraction 0.1

The stand-in images are simple drawings (a square per sprite; floor, wall and a disc per scene), so they
compress about as well as the real ones; the h5 file uses h5py's automatic chunking with gzip, as a file
written with ``create_dataset(..., compression="gzip")`` gets. Timings depend on the disk and page cache.
"""

from __future__ import annotations

import argparse
import multiprocessing
import resource
import shutil
import tempfile
import time
import zipfile
from pathlib import Path

import h5py
import numpy as np
import torch
from matplotlib.colors import hsv_to_rgb

from betavae.data import DSpritesDataModule, Shapes3DDataModule
from betavae.data.dsprites import DSPRITES_FILE
from betavae.data.ground_truth import factors_of_rows

DSPRITES_SIZES = (1, 3, 6, 40, 32, 32)
SHAPES3D_SIZES = (10, 10, 10, 8, 4, 15)
CHUNK = 8192


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def memory() -> str:
    """Peak resident memory, and now: anonymous (the process's own) and file-backed (shared page cache)."""
    now = {}
    status = Path("/proc/self/status")
    if status.is_file():
        for line in status.read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("RssAnon", "RssFile"):
                now[key] = int(value.split()[0]) / 1024
    parts = ", ".join(f"{k} {v:,.0f} MB" for k, v in now.items())
    return f"peak RSS {peak_rss_mb():,.0f} MB" + (f"; now {parts}" if parts else "")


def in_child(target, *args) -> None:
    """Run ``target(*args)`` in a child process, so that its memory is not counted as this process's."""
    process = multiprocessing.get_context("fork").Process(target=target, args=args)
    process.start()
    process.join()
    if process.exitcode:
        raise RuntimeError(f"{target.__name__} failed with exit code {process.exitcode}")


def sized(sizes: tuple[int, ...], fraction: float, axis: int) -> tuple[int, ...]:
    out = list(sizes)
    out[axis] = max(1, round(sizes[axis] * fraction))
    return tuple(out)


def write_dsprites(path: Path, sizes: tuple[int, ...]) -> None:
    """A dSprites npz streamed chunk by chunk (imgs never whole in memory): a white square per sprite."""
    n = int(np.prod(sizes))
    classes = factors_of_rows(np.arange(n), sizes)
    grids = [np.ones(1), np.arange(1.0, 4), np.linspace(0.5, 1, 6), np.linspace(0, 2 * np.pi, 40)]
    grids += [np.linspace(0, 1, 32)] * 2
    values = np.stack([grids[k][classes[:, k]] for k in range(6)], axis=1)
    grid = np.arange(64)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for key, array in (("latents_classes", classes), ("latents_values", values)):
            with archive.open(f"{key}.npy", "w") as f:
                np.lib.format.write_array(f, array)
        with archive.open("imgs.npy", "w", force_zip64=True) as f:
            header = {"descr": "|u1", "fortran_order": False, "shape": (n, 64, 64)}
            np.lib.format.write_array_header_2_0(f, header)
            for start in range(0, n, CHUNK):
                c = classes[start : start + CHUNK]
                half = (3 + 4 * c[:, 2] + (c[:, 3] % 3))[:, None]  # (k, 1) pixels
                x, y = (12 + 40 * c[:, 4] / 31)[:, None], (12 + 40 * c[:, 5] / 31)[:, None]
                inside_x = np.abs(grid[None] - x) <= half  # (k, 64)
                inside_y = np.abs(grid[None] - y) <= half
                f.write((inside_y[:, :, None] & inside_x[:, None, :]).astype(np.uint8).tobytes())


def write_shapes3d(path: Path, sizes: tuple[int, ...]) -> None:
    """A 3dshapes.h5 written slab by slab: floor and wall colours by hue, a disc of the object's hue and scale."""
    n = int(np.prod(sizes))
    classes = factors_of_rows(np.arange(n), sizes)
    grids = [np.linspace(0, 0.9, 10)] * 3 + [np.linspace(0.75, 1.25, 8), np.arange(4.0), np.linspace(-30, 30, 15)]
    labels = np.stack([grids[k][classes[:, k]] for k in range(6)], axis=1)
    yy, xx = np.mgrid[0:64, 0:64]

    def colour(hue: np.ndarray) -> np.ndarray:  # (k,) -> (k, 3) uint8
        return (hsv_to_rgb(np.stack([hue, np.full_like(hue, 0.8), np.full_like(hue, 0.9)], 1)) * 255).astype(np.uint8)

    with h5py.File(path, "w") as f:
        images = f.create_dataset("images", (n, 64, 64, 3), np.uint8, chunks=True, compression="gzip")
        f.create_dataset("labels", data=labels)
        step = images.chunks[0]
        for start in range(0, n, step):
            lab = labels[start : start + step]
            k = len(lab)
            slab = np.empty((k, 64, 64, 3), np.uint8)
            slab[:, 40:] = colour(lab[:, 0])[:, None, None]
            slab[:, :40] = colour(lab[:, 1])[:, None, None]
            radius = (8 * lab[:, 3] + lab[:, 4])[:, None, None]
            cx = (32 + 0.2 * lab[:, 5])[:, None, None]
            disc = (yy[None] - 38) ** 2 + (xx[None] - cx) ** 2 <= radius**2  # (k, 64, 64)
            slab[disc] = np.repeat(colour(lab[:, 2]), disc.sum(axis=(1, 2)), axis=0)
            images[start : start + k] = slab


def rate(n: int, seconds: float) -> str:
    return f"{n / seconds:,.0f} images/s ({n:,} in {seconds:.2f} s)"


def measure(name: str, make, file: Path, h5: bool) -> None:
    print(f"\n== {name}: {file.stat().st_size / 1e6:,.1f} MB file")
    start = time.perf_counter()
    dm = make()
    dm.prepare_data()
    dm.setup("fit")
    first = time.perf_counter() - start
    reader = dm.images()
    print(f"first setup (builds the cache): {first:.1f} s; cache file {reader.path.stat().st_size / 1e6:,.1f} MB")
    print(f"after the first setup: {memory()}")
    start = time.perf_counter()
    again = make()
    again.setup("fit")
    print(f"later setup (cache reused): {time.perf_counter() - start:.2f} s")
    rng = np.random.default_rng(0)
    for batch in (64, 10_000):
        factors = again.sample_factors(batch, rng)
        again.images_of(factors)  # warm the page cache for these rows' neighbourhood
        reps = max(1, 20_000 // batch)
        start = time.perf_counter()
        for _ in range(reps):
            again.images_of(again.sample_factors(batch, rng))
        print(f"images_of, batches of {batch:,}: {rate(batch * reps, time.perf_counter() - start)}")
    for workers in (0, 2):
        again.num_workers = workers
        loader = again.train_dataloader()
        count, start = 0, None
        for i, b in enumerate(loader):
            if i == 2:
                start, count = time.perf_counter(), 0  # after the workers' start
            count += len(b["image"])
            if i == 2 + 150:
                break
        print(f"training batches of 64, {workers} workers: {rate(count, time.perf_counter() - start)}")
    if h5:
        with h5py.File(file, "r") as f:
            images = f["images"]
            print(f"h5 chunks {images.chunks}, {images.compression}")
            start, count = time.perf_counter(), 0
            while time.perf_counter() - start < 20 and count < 640:
                rows = np.sort(rng.choice(len(images), 64, replace=False))
                images[rows]  # h5py wants increasing indices
                count += 64
            print(f"h5 direct, random sorted batches of 64: {rate(count, time.perf_counter() - start)}")
    print(f"at the end: {memory()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", choices=["dsprites", "shapes3d", "both"], default="both")
    parser.add_argument("--grid-fraction", type=float, default=1.0, help="keep this fraction of the first factor")
    parser.add_argument("--workdir", type=Path, default=None, help="where the files and caches go (default: a temp)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)  # on an oversubscribed machine, 1 avoids threads waiting on each other
    print(f"torch threads: {torch.get_num_threads()}; before any data: {memory()}")
    work = args.workdir or Path(tempfile.mkdtemp(prefix="betavae-factor-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        if args.dataset in ("dsprites", "both"):
            sizes = sized(DSPRITES_SIZES, args.grid_fraction, axis=3)  # fewer orientations
            path = work / "dsprites" / DSPRITES_FILE
            path.parent.mkdir(exist_ok=True)
            start = time.perf_counter()
            in_child(write_dsprites, path, sizes)
            print(f"wrote dSprites {sizes} = {int(np.prod(sizes)):,} images in {time.perf_counter() - start:.0f} s")
            measure(
                "dSprites",
                lambda: DSpritesDataModule(root=str(path.parent), cache_dir=str(work / "cache"), batch_size=64),
                path,
                h5=False,
            )
        if args.dataset in ("shapes3d", "both"):
            sizes = sized(SHAPES3D_SIZES, args.grid_fraction, axis=0)  # fewer floor hues
            path = work / "3dshapes" / "3dshapes.h5"
            path.parent.mkdir(exist_ok=True)
            start = time.perf_counter()
            in_child(write_shapes3d, path, sizes)
            print(f"wrote 3D Shapes {sizes} = {int(np.prod(sizes)):,} images in {time.perf_counter() - start:.0f} s")
            measure(
                "3D Shapes",
                lambda: Shapes3DDataModule(root=str(path.parent), cache_dir=str(work / "cache"), batch_size=64),
                path,
                h5=True,
            )
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
