"""What a content check in the decoded cache's key would cost: the key today (one ``stat`` per file) against a
sampled digest (three 4 KB reads per file: head, middle, tail, XXH3-64) and a full digest (every byte), on a
folder of JPEGs, beside what one cache build (decoding every file) costs.

The key today misses a source file rewritten with the same size and modification time (``cp -p``/``rsync -t``
from another copy, ``touch -r``, fixed-size formats such as BMP or PPM): that file is served from the stale
cache. This measures the price of catching it, to decide whether to (see docs/reliability.md).

    python scripts/benchmark_cache_key.py                   # 5,000 JPEGs of 178x218 in a temporary folder
    python scripts/benchmark_cache_key.py --folder DIR      # an existing folder (e.g. on a network filesystem)

Numbers are for a warm page cache (the files were just written or read); a cold cache or a network filesystem
adds one round trip per file to the sampled digest (not to the stat, which the listing needs anyway).
"""

from __future__ import annotations

import argparse  # a benchmark script, not a betavae command: plain argparse is enough here
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import xxhash

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchmark_data import write_jpegs  # noqa: E402

from betavae.data import find_images, load_image  # noqa: E402
from betavae.data.cache_keys import fingerprint  # noqa: E402

SAMPLE = 4096


def sampled_digest(path: Path) -> str:
    """XXH3-64 of the size and three 4 KB pieces of the file: its head, middle and tail."""
    h = xxhash.xxh3_64()
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        h.update(size.to_bytes(8, "little"))
        for start in sorted({0, max(size // 2 - SAMPLE // 2, 0), max(size - SAMPLE, 0)}):
            f.seek(start)
            h.update(f.read(SAMPLE))
    return h.hexdigest()


def full_digest(path: Path) -> str:
    return xxhash.xxh3_64(path.read_bytes()).hexdigest()


def timed(fn: Callable[[], object], repeats: int) -> dict[str, float]:
    """Median wall and CPU (user+sys of this process) seconds of ``fn`` over ``repeats`` calls."""
    wall, cpu = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return {"wall_s": round(statistics.median(wall), 4), "cpu_s": round(statistics.median(cpu), 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", type=Path, default=None, help="An existing image folder (default: generate).")
    parser.add_argument("--num-images", type=int, default=5000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--decode-sample", type=int, default=500, help="Files decoded to estimate a cache build.")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = args.folder or Path(tmp) / "jpegs"
        if args.folder is None:
            write_jpegs(root, args.num_images)
        files = find_images(root)
        total_mb = sum(f.stat().st_size for f in files) / 2**20
        results = {
            "files": len(files),
            "megabytes": round(total_mb, 1),
            "stat_key_today": timed(lambda: fingerprint(files, root), args.repeats),
            "sampled_digest_3x4KB": timed(lambda: [sampled_digest(f) for f in files], args.repeats),
            "full_digest": timed(lambda: [full_digest(f) for f in files], args.repeats),
        }
        sample = files[: args.decode_sample]
        decode = timed(lambda: [load_image(f, 3, 64, 148) for f in sample], 1)
        scale = len(files) / len(sample)
        results["cache_build_estimate"] = {k: round(v * scale, 2) for k, v in decode.items()}
        extra = results["sampled_digest_3x4KB"]["wall_s"] - results["stat_key_today"]["wall_s"]
        results["sampled_extra_per_1000_files_ms"] = round(1000 * extra / len(files) * 1000, 2)
        print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
