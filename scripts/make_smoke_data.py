"""Tiny offline stand-ins for the study's four datasets, in each data module's own layout.

Written from the photographs and textures bundled with scikit-image (no download), so that
``scripts/reproduce_study.sh --smoke`` runs the real loaders, splits, transforms, training, evaluation
and report end to end on a CPU in minutes:

- ``celeba/img_align_celeba/000001.jpg ...``: 178x218 crops of portraits (astronaut, the LFW faces);
- ``stanford_cars/cars_train/00001.jpg ...``: crops of the photographs;
- ``cats/*.jpg``: crops of ``chelsea`` (a cat);
- ``batik/*.png``: grayscale textures (brick, grass, gravel), cut into patches by ``BatikDataModule``.

    python scripts/make_smoke_data.py OUT_DIR [--count 48]

The scores of models trained on these mean nothing; they exist to exercise the pipeline.
"""

from __future__ import annotations

import argparse  # a helper script, not a betavae command
from pathlib import Path

import numpy as np
from PIL import Image
from skimage import data as skdata


def crops(image: np.ndarray, count: int, size: tuple[int, int], rng: np.random.Generator) -> list[Image.Image]:
    """``count`` random crops of ``image`` (H, W[, 3]) uint8, resized to ``size`` (width, height)."""
    pil = Image.fromarray(image).convert("RGB")
    w, h = pil.size
    out = []
    for _ in range(count):
        cw = int(rng.uniform(0.4, 0.9) * w)
        ch = min(h, int(cw * size[1] / size[0]))
        x, y = rng.integers(0, w - cw + 1), rng.integers(0, h - ch + 1)
        out.append(pil.crop((x, y, x + cw, y + ch)).resize(size, Image.BILINEAR))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path, help="where the dataset folders go")
    parser.add_argument("--count", type=int, default=48, help="images per dataset")
    opts = parser.parse_args()
    rng = np.random.default_rng(0)
    photos = [skdata.astronaut(), skdata.coffee(), skdata.chelsea(), skdata.rocket(), skdata.camera()]

    celeba = opts.out / "celeba" / "img_align_celeba"
    celeba.mkdir(parents=True, exist_ok=True)
    faces = [Image.fromarray((f * 255).astype(np.uint8)).convert("RGB") for f in skdata.lfw_subset()]
    portraits = crops(skdata.astronaut(), opts.count // 2, (178, 218), rng)
    portraits += [f.resize((178, 218), Image.BILINEAR) for f in faces[: opts.count - len(portraits)]]
    for i, image in enumerate(portraits):
        image.save(celeba / f"{i + 1:06d}.jpg", quality=95)

    cars = opts.out / "stanford_cars" / "cars_train"
    cars.mkdir(parents=True, exist_ok=True)
    for i in range(opts.count):
        crops(photos[i % len(photos)], 1, (160, 100), rng)[0].save(cars / f"{i + 1:05d}.jpg", quality=95)

    cats = opts.out / "cats"
    cats.mkdir(parents=True, exist_ok=True)
    for i, image in enumerate(crops(skdata.chelsea(), opts.count, (128, 128), rng)):
        image.save(cats / f"cat_{i:04d}.jpg", quality=95)

    batik = opts.out / "batik"
    batik.mkdir(parents=True, exist_ok=True)
    for name in ("brick", "grass", "gravel"):
        Image.fromarray(getattr(skdata, name)()).convert("L").save(batik / f"{name}.png")
    print(f"wrote celeba, stanford_cars, cats, batik under {opts.out}")


if __name__ == "__main__":
    main()
