"""Stanford Cars, all of it or the subset named in a file list (the study: cars seen from the front)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import scipy.io
import torch
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn

from betavae.data.cache import CacheEntry
from betavae.data.folder import ImageFolderDataModule, find_images
from betavae.errors import DataError, MissingFileError

# the devkit's labelled annotations of each image folder, and the class names
ANNOTATION_FILES = {"cars_train": "cars_train_annos.mat", "cars_test": "cars_test_annos_withlabels.mat"}
META_FILE = "cars_meta.mat"
DEVKIT_WHERE = (
    "car_devkit.tgz, formerly https://ai.stanford.edu/~jkrause/cars/car_devkit.tgz, now linked from "
    "https://github.com/pytorch/vision/issues/7545 (with cars_test_annos_withlabels.mat)"
)


def load_mat(path: Path, key: str) -> np.ndarray:
    """Variable ``key`` of a MATLAB file, squeezed (``scipy.io.loadmat``), as at least a 1-d array.

    Raises:
        ValueError: the file cannot be read as a .mat file, or lacks ``key`` (names the file and the key).
    """
    try:
        contents = scipy.io.loadmat(path, squeeze_me=True)
    except Exception as err:  # scipy raises ValueError, TypeError, MatReadError, OSError for broken files
        raise DataError(f"{path} is not a readable MATLAB file ({type(err).__name__}: {err})") from err
    if key not in contents:
        found = ", ".join(k for k in contents if not k.startswith("__"))
        raise DataError(f"{path} has no {key!r} (it has {found or 'nothing'}): is it the Stanford Cars devkit's?")
    return np.atleast_1d(contents[key])


def read_annotations(path: Path) -> dict[str, int]:
    """A devkit annotation file (``cars_train_annos.mat``) as {image file name: class index from 0}.

    Raises:
        ValueError: unreadable, no ``annotations`` struct with ``fname`` and ``class`` fields, or a class
            below 1 (the devkit numbers classes from 1).
    """
    annotations = load_mat(path, "annotations")
    fields = annotations.dtype.names or ()
    if "fname" not in fields or "class" not in fields:
        raise DataError(
            f"{path}: annotations have the fields {', '.join(fields) or 'none'}; expected fname and class "
            "(cars_test_annos.mat has no classes: use cars_test_annos_withlabels.mat)"
        )
    classes = np.asarray(annotations["class"].tolist(), dtype=np.int64) - 1
    if len(classes) and classes.min() < 0:
        raise DataError(f"{path}: class {int(classes.min()) + 1} is not a devkit class number (1, 2, ...)")
    return dict(zip((str(name) for name in annotations["fname"]), classes.tolist(), strict=True))


def read_class_names(path: Path) -> list[str]:
    """The devkit's class names (``cars_meta.mat``: ``class_names``), class index 0 first."""
    return [str(name) for name in load_mat(path, "class_names")]


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

    Class labels: when the devkit is there (``cars_train_annos.mat``, and ``cars_test_annos_withlabels.mat``
    for ``cars_test/``; ``cars_meta.mat`` for the names), batches carry ``"label"``, the car model's index
    (0 .. 195), and ``classes`` names them (after ``setup``). No devkit: no labels, one info line; an image
    the annotations do not cover: no labels, one warning naming it.

    Args:
        root: The image folder, searched recursively: e.g. ``data/stanford_cars`` (with ``cars_train/``
            and ``cars_test/``) or ``data/stanford_cars/cars_train``.
        file_list: A text file with one image path per line, relative to ``root`` (or absolute, inside
            it); blank lines and lines starting with ``#`` are ignored. ``None``: every image.
        crop_size: Center crop in source pixels before resizing; ``None`` for none.
        devkit: The folder of the devkit's .mat files; ``None``: looked for in ``devkit/``,
            ``car_devkit/devkit/`` and the folder itself, under ``root`` and under its parent.
        **kwargs: ``ImageFolderDataModule`` and ``ImageDataModule`` arguments.
    """

    def __init__(
        self,
        root: str = "data/stanford_cars",
        file_list: str | None = None,
        crop_size: int | None = None,
        devkit: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(root=root, crop_size=crop_size, **kwargs)
        self.file_list = Path(file_list).expanduser() if file_list else None
        self.devkit = Path(devkit).expanduser() if devkit else None
        self.classes: list[str] = []

    def layout(self) -> str:
        return (
            "Expected layout (Stanford Cars, e.g. from https://www.kaggle.com/datasets/jessicali9530/stanford-cars-dataset):\n"
            f"  {self.root}/\n"
            "    cars_train/00001.jpg ... 08144.jpg\n"
            "    cars_test/00001.jpg ... 08041.jpg       (optional)\n"
            "    devkit/cars_meta.mat, devkit/cars_train_annos.mat   (optional: class labels)\n"
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
            raise MissingFileError(f"file_list {self.file_list} does not exist.\n{self.layout()}")
        names = read_file_list(self.file_list)
        if not names:
            raise DataError(f"file_list {self.file_list} names no file.\n{self.layout()}")
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
                raise MissingFileError(
                    f"file_list {self.file_list} names {len(bad)} file(s) {what}: "
                    f"{', '.join(bad[:10])}{' ...' if len(bad) > 10 else ''}.\n{self.layout()}"
                )
        return sorted(files)

    def find_devkit(self) -> Path | None:
        """The folder with ``cars_train_annos.mat`` or ``cars_test_annos_withlabels.mat``, or ``None``.

        Raises:
            FileNotFoundError: ``devkit`` was given and holds neither.
        """
        if self.devkit is not None:
            candidates = [self.devkit]
        else:
            bases = dict.fromkeys([self.root, self.root.parent])
            candidates = [base / sub for base in bases for sub in ("devkit", "car_devkit/devkit", ".")]
        for folder in candidates:
            if any((folder / name).is_file() for name in ANNOTATION_FILES.values()):
                return folder
        if self.devkit is not None:
            raise MissingFileError(
                f"devkit {self.devkit} holds neither {' nor '.join(ANNOTATION_FILES.values())}; get the Stanford Cars "
                f"devkit ({DEVKIT_WHERE}) or set devkit to null.\n{self.layout()}"
            )
        rank_zero_info(
            f"Stanford Cars: no devkit ({ANNOTATION_FILES['cars_train']}) in {', '.join(map(str, candidates))}: "
            f"batches carry no class labels. The devkit: {DEVKIT_WHERE}."
        )
        return None

    def labels(self, entry: CacheEntry) -> torch.Tensor | None:
        """The class index of every cached row, from the devkit, when it covers every image."""
        self.classes = []
        devkit = self.find_devkit()
        if devkit is None:
            return None
        by_folder = {
            folder: read_annotations(devkit / name)
            for folder, name in ANNOTATION_FILES.items()
            if (devkit / name).is_file()
        }
        root = self.image_root()
        labels, unlabelled = [], []
        for source in entry.row_source.tolist():
            path = (root / entry.sources[source].path).absolute()
            label = by_folder.get(path.parent.name, {}).get(path.name)  # cars_train/00001.jpg: train's 00001.jpg
            if label is None:
                unlabelled.append(entry.sources[source].path)
            else:
                labels.append(label)
        if unlabelled:
            rank_zero_warn(
                f"{len(unlabelled)} image(s) under {root} have no class in {devkit} (e.g. {', '.join(unlabelled[:3])}; "
                f"classes are read for {', '.join(f'{f}/ from {ANNOTATION_FILES[f]}' for f in ANNOTATION_FILES)}): "
                "batches carry no class labels."
            )
            return None
        meta = devkit / META_FILE
        names = read_class_names(meta) if meta.is_file() else []
        if len(names) <= max(labels):
            if meta.is_file():
                raise DataError(f"{meta} names {len(names)} classes, but the annotations use class {max(labels) + 1}")
            rank_zero_info(f"Stanford Cars: no {meta}: classes are named by number.")
            names = [f"class {k + 1}" for k in range(max(labels) + 1)]
        self.classes = names
        return torch.tensor(labels, dtype=torch.int64)
