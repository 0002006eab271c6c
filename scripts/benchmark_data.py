"""Data pipeline speed: images/s of torchvision ImageFolder + PIL transforms vs our cached DataModule.

Generates ``--num-images`` JPEGs of 178x218 (CelebA's aligned size) in a temporary folder, then
iterates training batches (no model: this measures what the data side can feed a GPU) with
``--workers`` DataLoader workers on both sides:

(a) ``torchvision.datasets.ImageFolder`` with the study's PIL transforms: CenterCrop(148), Resize(64),
    RandomHorizontalFlip, ToTensor, Normalize; every epoch decodes every JPEG;
(b) ``ImageFolderDataModule(crop_size=148, image_size=64)``: the first epoch includes building the
    decoded cache (``prepare_data`` + ``setup``); later epochs read uint8 rows from it and workers hand
    over uint8 batches: the target compares what reaches the training process (as tensors on
    ``--device``). A second row adds the flip, float conversion and normalization that
    ``on_after_batch_transfer`` runs after the transfer (``prepare_batch``): on a GPU that costs the
    device almost nothing; here, on ``--device cpu``, it runs in the main process, one core shared with
    the workers. A second DataModule on the same cache stands for a later run.

Also reports the resident memory (RSS) of the process and its workers, split into anonymous memory
(private to the processes) and file-backed pages (the memory-mapped cache: page cache, shared).

    python scripts/benchmark_data.py                       # 5,000 images, 2 workers, 4 epochs
    python scripts/benchmark_data.py --workers 8 --num-images 20000

It also measures what the decoded cache's integrity check (every byte hashed at setup) costs on a
``--digest-rows`` (20,000) image cache against one cached epoch over it (``--digest-only``: just that).

Targets: (b) later epochs >= 20x (a); the integrity check <= 10 % of one cached epoch (exit status 1 when
either is missed).
"""

from __future__ import annotations

import argparse  # a benchmark script, not a betavae command: plain argparse is enough here
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader
from torchvision import datasets
from torchvision import transforms as T

from betavae.data import CachedImageDataset, ImageDataModule, ImageFolderDataModule
from betavae.data.cache_keys import file_digest
from betavae.normalization import IMAGENET_MEAN, IMAGENET_STD

TARGET = 20.0
DIGEST_TARGET = 0.10  # the cache's whole-file check at setup: at most 10 % of one cached epoch


def write_jpegs(folder: Path, count: int, seed: int = 0) -> None:
    """``count`` smooth random colour images of 178x218 with some noise, JPEG quality 90."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(count):
        coarse = Image.fromarray(rng.integers(0, 256, (6, 5, 3), dtype=np.uint8))
        smooth = np.asarray(coarse.resize((178, 218), Image.BICUBIC), dtype=np.int16)
        noisy = np.clip(smooth + rng.integers(-12, 13, smooth.shape), 0, 255).astype(np.uint8)
        Image.fromarray(noisy).save(folder / f"{i + 1:06d}.jpg", quality=90)


def memory_mb() -> dict[str, float]:
    """Proportional set size (MB) of this process and its children (the workers), summed without double
    counting shared pages: ``Pss_Anon`` (private memory) and ``Pss_File`` (file-backed pages: the
    memory-mapped cache, i.e. the page cache, and the libraries)."""
    pids, i = [os.getpid()], 0
    while i < len(pids):
        for task in Path(f"/proc/{pids[i]}/task").glob("*"):
            children = (task / "children").read_text().split() if (task / "children").exists() else []
            pids += [int(c) for c in children if int(c) not in pids]
        i += 1
    total = {"Pss_Anon": 0.0, "Pss_File": 0.0}
    for pid in pids:
        try:
            lines = Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()
        except OSError:
            continue
        for line in lines:
            key = line.split(":")[0]
            if key in total:
                total[key] += int(line.split()[1]) / 1024
    return total


DEVICE = torch.device("cpu")  # where batches go (``--device``): the GPU a training run would feed


def to_device(batch: Any) -> Any:
    """A batch (tensor, list or dict of tensors) copied to ``DEVICE`` (asynchronously from pinned memory)."""
    if isinstance(batch, torch.Tensor):
        return batch.to(DEVICE, non_blocking=True)
    if isinstance(batch, dict):
        return {k: to_device(v) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return [to_device(v) for v in batch]
    return batch


def epoch(loader: DataLoader, prepare: Callable[[Any], Any] = to_device) -> tuple[int, float]:
    """(images, seconds) of one pass, every batch brought to ``DEVICE`` and made ready for a training step
    (``prepare``: the copy, and for our DataModule its flip, float conversion and normalization there)."""
    start, n = time.perf_counter(), 0
    for batch in loader:
        batch = prepare(batch)
        images = batch[0] if isinstance(batch, (list, tuple)) else batch["image"]
        n += images.shape[0]
    if DEVICE.type == "cuda":
        torch.cuda.synchronize()
    return n, time.perf_counter() - start


def delivered(batch: Any) -> Any:
    """What the loader delivers to the training process, on ``DEVICE`` (no flip or normalization)."""
    return to_device(batch)


def training_batches(dm: ImageDataModule) -> Callable[[Any], Any]:
    """What Lightning does with our batches: the copy to ``DEVICE``, then ``on_after_batch_transfer`` in
    training (``prepare_batch`` with the flip) on that device."""
    return lambda batch: dm.prepare_batch(to_device(batch), train=True)


def run_torchvision(root: Path, workers: int, batch_size: int, epochs: int) -> list[float]:
    transform = T.Compose(
        [
            T.CenterCrop(148),
            T.Resize(64),
            T.RandomHorizontalFlip(),
            T.ToTensor(),
            T.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        ]
    )
    dataset = datasets.ImageFolder(str(root), transform=transform)
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=True,
        num_workers=workers,
        persistent_workers=workers > 0,
        pin_memory=DEVICE.type == "cuda",
    )
    rates = []
    for _ in range(epochs):
        n, seconds = epoch(loader)
        rates.append(n / seconds)
    return rates


def make_datamodule(root: Path, cache: Path, workers: int, batch_size: int) -> ImageFolderDataModule:
    return ImageFolderDataModule(
        root=str(root),
        crop_size=148,
        image_size=64,
        batch_size=batch_size,
        num_workers=workers,
        cache_dir=str(cache),
        pin_memory=DEVICE.type == "cuda",
    )


def run_in_process(root: Path, cache: Path, batch_size: int) -> tuple[float, float]:
    """(a) and (b) later-epoch images/s in this process alone (no workers, one thread): the work per image."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        tv = run_torchvision(root, 0, batch_size, 1)[0]
        dm = make_datamodule(root, cache, 0, batch_size)
        dm.setup("fit")
        loader = dm.train_dataloader()
        epoch(loader, training_batches(dm))
        n, seconds = epoch(loader, training_batches(dm))
    finally:
        torch.set_num_threads(threads)
    return tv, n / seconds


def run_datamodule(root: Path, cache: Path, workers: int, batch_size: int, epochs: int) -> dict[str, object]:
    def make() -> ImageFolderDataModule:
        return make_datamodule(root, cache, workers, batch_size)

    start = time.perf_counter()
    dm = make()
    dm.prepare_data()
    dm.setup("fit")
    build_seconds = time.perf_counter() - start
    loader = dm.train_dataloader()
    n, seconds = epoch(loader, training_batches(dm))
    first = n / (build_seconds + seconds)
    later, prepared, memory = [], [], [memory_mb()]
    for _ in range(epochs - 1):
        n, seconds = epoch(loader, delivered)
        later.append(n / seconds)
        n, seconds = epoch(loader, training_batches(dm))
        prepared.append(n / seconds)
        memory.append(memory_mb())
    del loader, dm

    start = time.perf_counter()
    rerun = make()
    rerun.prepare_data()
    rerun.setup("fit")
    setup_seconds = time.perf_counter() - start
    loader = rerun.train_dataloader()
    epoch(loader, delivered)  # starts the workers
    n, seconds = epoch(loader, delivered)
    return {
        "build_seconds": build_seconds,
        "first": first,
        "later": later,
        "prepared": prepared,
        "rerun_setup_seconds": setup_seconds,
        "rerun": n / seconds,
        "memory": memory,
    }


class _CacheProbe(ImageDataModule):
    """The DataModule read path (split, batched transforms, loaders) over an existing cache file."""

    def __init__(self, path: str, rows: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.path, self.rows = path, rows

    def build_dataset(self) -> CachedImageDataset:
        return CachedImageDataset(Path(self.path), (self.rows, 3, 64, 64))


def random_cache(path: Path, rows: int) -> None:
    """A cache file of ``rows`` random 3x64x64 uint8 images (random bytes: nothing for a hash to shortcut)."""
    images = np.memmap(path, dtype=np.uint8, mode="w+", shape=(rows, 3, 64, 64))
    for start in range(0, rows, 1000):
        block = images[start : start + 1000]
        block[:] = np.random.default_rng(start).integers(0, 256, block.shape, dtype=np.uint8)
    images.flush()


def digest_cost(rows: int, workers: int, batch_size: int, repeats: int = 5) -> dict[str, float]:
    """What checking every byte of a cache costs at setup (``betavae.data.cache.file_digest``), against one
    cached training epoch over the same file: seconds of each (medians, warm page cache) and their ratio."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "images.u8"
        random_cache(path, rows)
        file_digest(path)  # pages in the file, as the build that wrote it would have
        digests = []
        for _ in range(repeats):
            start = time.perf_counter()
            file_digest(path)
            digests.append(time.perf_counter() - start)
        dm = _CacheProbe(str(path), rows, batch_size=batch_size, num_workers=workers, pin_memory=False)
        dm.setup("fit")
        loader = dm.train_dataloader()
        epoch(loader, training_batches(dm))  # starts the workers
        epochs = [epoch(loader, training_batches(dm))[1] for _ in range(3)]
    digest, one_epoch = statistics.median(digests), statistics.median(epochs)
    return {"rows": rows, "mb": path_mb(rows), "digest_s": digest, "epoch_s": one_epoch, "ratio": digest / one_epoch}


def path_mb(rows: int) -> float:
    return rows * 3 * 64 * 64 / 2**20


def memory_probe(rows: int, workers: int, batch_size: int, batches: int) -> None:
    """Print {rows, Pss_Anon, Pss_File} after ``batches`` training batches over a random cache of ``rows`` images."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "images.u8"
        random_cache(path, rows)
        dm = _CacheProbe(str(path), rows, batch_size=batch_size, num_workers=workers, pin_memory=False)
        dm.setup("fit")
        loader, done = dm.train_dataloader(), 0
        while done < batches:
            for batch in loader:
                done += batch["image"].shape[0] > 0
                if done == batches:
                    break
        print(json.dumps({"rows": rows, **memory_mb()}))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num-images", type=int, default=5000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=4, help="epochs per pipeline (>= 2)")
    parser.add_argument("--workdir", type=Path, default=None, help="where to write the JPEGs (default: a temp dir)")
    parser.add_argument("--device", default="cpu", help="where batches go: cpu, or cuda (a GPU being fed)")
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch threads of this process; default: the cores the workers leave free (at least 1): more "
        "threads than free cores make each elementwise op wait on busy cores",
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the figures as JSON here")
    parser.add_argument("--digest-rows", type=int, default=20000, help="cache size of the integrity-check cost")
    parser.add_argument("--digest-only", action="store_true", help="only measure the integrity check's cost")
    parser.add_argument("--probe", type=int, nargs=2, default=None, help=argparse.SUPPRESS)  # internal: ROWS BATCHES
    args = parser.parse_args()
    global DEVICE
    DEVICE = torch.device(args.device)
    torch.set_num_threads(args.threads or max(1, (os.cpu_count() or 1) - args.workers))
    if args.probe:
        memory_probe(args.probe[0], args.workers, args.batch_size, args.probe[1])
        return 0
    digest = digest_cost(args.digest_rows, args.workers, args.batch_size)
    digest_ok = digest["ratio"] <= DIGEST_TARGET
    print(
        f"Cache integrity check (XXH3-128 of every byte) of a {digest['rows']}-image cache ({digest['mb']:.0f} MB): "
        f"{digest['digest_s'] * 1000:.0f} ms, one cached epoch over it {digest['epoch_s']:.2f} s "
        f"({args.workers} workers): {digest['ratio']:.1%} of an epoch, target <= {DIGEST_TARGET:.0%}: "
        f"{'met' if digest_ok else 'MISSED'}"
    )
    if args.digest_only:
        return 0 if digest_ok else 1
    if args.epochs < 2:
        parser.error("--epochs must be >= 2 (a first epoch and later ones)")

    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        images = Path(tmp) / "images"
        start = time.perf_counter()
        write_jpegs(images / "all", args.num_images)  # ImageFolder needs a class folder
        print(f"wrote {args.num_images} JPEGs of 178x218 in {time.perf_counter() - start:.1f} s")

        tv = run_torchvision(images, args.workers, args.batch_size, args.epochs)
        ours = run_datamodule(images, Path(tmp) / "cache", args.workers, args.batch_size, args.epochs)
        tv_alone, ours_alone = run_in_process(images, Path(tmp) / "cache", args.batch_size)

    tv_rate = statistics.median(tv)
    later = statistics.median(ours["later"])
    ratio = later / tv_rate
    mem = ours["memory"]
    print()
    print(
        f"torch {torch.__version__}, {os.cpu_count()} CPUs, {args.workers} workers, batch {args.batch_size}, "
        f"{torch.get_num_threads()} torch thread(s) in this process"
    )
    print()
    print("| pipeline | first epoch | later epochs | later / (a) |")
    print("|---|---|---|---|")
    print(f"| (a) ImageFolder + PIL transforms | {tv[0]:.0f} img/s | {tv_rate:.0f} img/s | 1.0x |")
    print(
        f"| (b) ImageFolderDataModule | {ours['first']:.0f} img/s (cache built in {ours['build_seconds']:.1f} s) "
        f"| {later:.0f} img/s | {ratio:.1f}x |"
    )
    prepared = statistics.median(ours["prepared"])
    print(
        f"| (b) + flip, float and normalize in this process ({DEVICE.type}) | | {prepared:.0f} img/s "
        f"| {prepared / tv_rate:.1f}x |"
    )
    print(
        f"| (b), a later run on the same cache | setup {ours['rerun_setup_seconds']:.2f} s "
        f"| {ours['rerun']:.0f} img/s | {ours['rerun'] / tv_rate:.1f}x |"
    )
    print(
        f"| (a) / (b) in the main process, no workers, 1 thread | | {tv_alone:.0f} / {ours_alone:.0f} img/s "
        f"| {ours_alone / tv_alone:.1f}x |"
    )
    print()
    cache_mb = args.num_images * 3 * 64 * 64 / 2**20
    print(f"Resident memory (PSS, MB) of (b), process + workers, after each epoch (the cache file: {cache_mb:.0f} MB):")
    for key in ("Pss_Anon", "Pss_File"):
        print(f"  {key}: {', '.join(f'{m[key]:.0f}' for m in mem)}")
    # the same number of batches for both sizes: workers' copy-on-write of the parent's pages grows with
    # the batches they produce (up to a plateau), not with the data, so equal work compares like with like
    batches = 2 * (4 * args.num_images * 3 // 4 // args.batch_size)  # two epochs of the larger set
    print(f"\nMemory against dataset size: the same read path over random caches, fresh processes, {batches} batches:")
    print("| images | cache file | Pss_Anon | Pss_File |")
    print("|---|---|---|---|")
    for rows in (args.num_images, 4 * args.num_images):
        command = [sys.executable, __file__, "--probe", str(rows), str(batches)]
        command += [f"--workers={args.workers}", f"--batch-size={args.batch_size}"]
        out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
        probe = json.loads(out.splitlines()[-1])
        size = rows * 3 * 64 * 64 / 2**20
        print(f"| {rows} | {size:.0f} MB | {probe['Pss_Anon']:.0f} MB | {probe['Pss_File']:.0f} MB |")
    ok = ratio >= TARGET
    print(f"\ntarget later epochs >= {TARGET:.0f}x (a): {'met' if ok else 'MISSED'} ({ratio:.1f}x)")
    if args.json is not None:
        figures = {"device": str(DEVICE), "workers": args.workers, "torchvision": tv_rate, "ours": later}
        figures["prepared"] = prepared
        figures.update(ratio=ratio, rerun=ours["rerun"], digest=digest)
        args.json.write_text(json.dumps(figures))
    return 0 if ok and digest_ok else 1


if __name__ == "__main__":
    sys.exit(main())
