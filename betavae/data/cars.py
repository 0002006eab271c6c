"""Stanford Cars, all of it or the subset named in a file list (the study: cars seen from the front)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from betavae.data.folder import ImageFolderDataModule, find_images


def read_file_list(path: Path) -> list[str]:
    """Non-empty lines of ``path`` that do not start with ``#``, stripped, in order, without repeats."""
    lines = (line.strip() for line in Path(path).read_text().splitlines())
    return list(dict.fromkeys(line for line in lines if line and not line.startswith("#")))


class StanfordCarsDataModule(ImageFolderDataModule):
    """Stanford Cars (16,185 photos of 196 car models, of every size), or the subset a file list names.

    Images are resized so that their shorter side is ``image_size`` and center-cropped (set
    ``crop_size`` to crop source pixels first); grayscale and CMYK photos (the set has some) are
    converted to RGB. The study kept only the cars seen from the front-left or front-right: write their
    paths into a text file and pass it as ``file_list``. A list naming a file that does not exist stops
    setup with an error naming it.

    Args:
        root: The image folder, searched recursively: e.g. ``data/stanford_cars`` (with ``cars_train/``
            and ``cars_test/``) or ``data/stanford_cars/cars_train``.
        file_list: A text file with one image path per line, relative to ``root`` (or absolute, inside
            it); blank lines and lines starting with ``#`` are ignored. ``None``: every image.
        crop_size: Center crop in source pixels before resizing; ``None`` for none.
        **kwargs: ``ImageFolderDataModule`` and ``ImageDataModule`` arguments.
    """

    def __init__(
        self,
        root: str = "data/stanford_cars",
        file_list: str | None = None,
        crop_size: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(root=root, crop_size=crop_size, **kwargs)
        self.file_list = Path(file_list).expanduser() if file_list else None

    def layout(self) -> str:
        return (
            "Expected layout (Stanford Cars, e.g. from https://www.kaggle.com/datasets/jessicali9530/stanford-cars-dataset):\n"
            f"  {self.root}/\n"
            "    cars_train/00001.jpg ... 08144.jpg\n"
            "    cars_test/00001.jpg ... 08041.jpg       (optional)\n"
            "and, for file_list, a text file with one path per line relative to the root, e.g.\n"
            "    cars_train/00001.jpg\n"
            "    cars_train/00017.jpg"
        )

    def preprocessing(self) -> dict[str, Any]:
        return {**super().preprocessing(), "file_list": str(self.file_list.resolve()) if self.file_list else None}

    def list_files(self) -> list[Path]:
        if self.file_list is None:
            return super().list_files()
        root = self.image_root()
        if not root.is_dir():
            find_images(root, self.extensions, self.layout())  # raises with the path and the layout
        if not self.file_list.is_file():
            raise FileNotFoundError(f"file_list {self.file_list} does not exist.\n{self.layout()}")
        names = read_file_list(self.file_list)
        if not names:
            raise ValueError(f"file_list {self.file_list} names no file.\n{self.layout()}")
        files, outside, missing = set(), [], []
        base = Path(os.path.abspath(root))
        for name in names:
            path = Path(os.path.abspath(base / Path(name).expanduser()))  # an absolute name stays as it is
            if not path.is_relative_to(base):
                outside.append(name)
            elif not path.is_file():
                missing.append(name)
            else:
                files.add(root / path.relative_to(base))
        for bad, what in ((outside, f"outside the root {root}"), (missing, f"missing under {root}")):
            if bad:
                raise FileNotFoundError(
                    f"file_list {self.file_list} names {len(bad)} file(s) {what}: "
                    f"{', '.join(bad[:10])}{' ...' if len(bad) > 10 else ''}.\n{self.layout()}"
                )
        return sorted(files)
