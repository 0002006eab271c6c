"""Write a Fashion-MNIST split as PNG folders, for `python -m betavae fid` (the FID floor: train vs validation).

The split is the data module's (``split_indices(n, val_fraction, split_seed)``: the configs' 0.25 and 42) and
the images are padded as the configs pad them (``--padding 2``: 32×32), so the folders hold exactly the images
that ``evaluate`` uses as its FID reference.

    python scripts/fashion_mnist_split_images.py /work/shared/data/fashion-mnist out/ --max-train 2400
    python -m betavae fid --save-stats out/val out/val.npz          # the reference statistics, once
    python -m betavae fid out/train out/val.npz                     # the floor
"""

from __future__ import annotations

import argparse  # a helper script, not a betavae command
import gzip
from pathlib import Path

import numpy as np
from PIL import Image

from betavae.data.base import split_indices


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("root", type=Path, help="folder with train-images-idx3-ubyte(.gz)")
    parser.add_argument("out", type=Path)
    parser.add_argument("--val-fraction", type=float, default=0.25)
    parser.add_argument("--split-seed", type=int, default=42)
    parser.add_argument("--padding", type=int, default=2)
    parser.add_argument("--max-train", type=int, default=None, help="the first N training images only")
    args = parser.parse_args()
    path = next(
        p for p in (args.root / "train-images-idx3-ubyte.gz", args.root / "train-images-idx3-ubyte") if p.exists()
    )
    raw = (gzip.open if path.suffix == ".gz" else open)(path, "rb").read()
    images = np.frombuffer(raw, np.uint8, offset=16).reshape(-1, 28, 28)  # (N, 28, 28)
    images = np.pad(images, ((0, 0), (args.padding,) * 2, (args.padding,) * 2))
    train, val = split_indices(len(images), args.val_fraction, args.split_seed)
    for name, indices in (("train", train[: args.max_train]), ("val", val)):
        folder = args.out / name
        folder.mkdir(parents=True, exist_ok=True)
        for i in indices:
            Image.fromarray(images[i], "L").save(folder / f"{i:05d}.png")
        print(f"{len(indices)} images -> {folder}")


if __name__ == "__main__":
    main()
