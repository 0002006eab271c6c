"""CelebA's aligned faces, cropped and resized as the study did, with its split or the official one."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from torch.utils.data import Dataset

from betavae.data.cache import CacheEntry
from betavae.data.folder import ImageFolderDataModule
from betavae.errors import DataError, MissingFileError

CELEBA_NAME = re.compile(r"^\d{6}\.(jpg|png)$", re.IGNORECASE)
PARTITION_FILE = "list_eval_partition.txt"
PARTITIONS = {0: "train", 1: "validation", 2: "test"}
ATTRIBUTE_FILE = "list_attr_celeba.txt"


def read_attributes(path: Path) -> tuple[tuple[str, ...], dict[str, np.ndarray]]:
    """``list_attr_celeba.txt`` as (attribute names, {file name: (K,) int64 0/1}), -1 read as 0.

    The format: line 1 the number of images, line 2 the K attribute names, then one line per image,
    ``000001.jpg  -1  1  1 -1 ...`` (K values of -1 or 1). Blank lines are ignored.

    Raises:
        ValueError: a malformed line (names the line and what was expected), or fewer or more image lines
            than line 1 announces.
    """
    path = Path(path)
    lines = path.read_text().splitlines()
    numbered = []  # (line number, fields) of the non-blank lines: the header's two, or every one to find an error
    for n, line in enumerate(lines, start=1):
        if line.strip():
            numbered.append((n, line.split()))
            if len(numbered) == 2:
                break
    if len(numbered) < 2 or len(numbered[0][1]) != 1 or not numbered[0][1][0].isdigit():
        n, first = numbered[0] if numbered else (1, [])
        raise DataError(
            f"{path}, line {n}: expected the number of images (e.g. '202599'), then a line of attribute names; "
            f"got {' '.join(first)!r}"
        )
    count, (names_line, names) = int(numbered[0][1][0]), numbered[1]
    names = tuple(names)
    expected = (
        f"an image name and {len(names)} values of -1 or 1 (one per attribute of line {names_line}), "
        "e.g. '000001.jpg -1 1 ...'"
    )
    files = [line.split(maxsplit=1)[0] for line in lines[names_line:] if line.strip()]
    if len(files) != count or not files:
        raise DataError(f"{path}: line {numbered[0][0]} announces {count} images, the file lists {len(files)}")
    try:  # numpy's C parser (the names column read as 0): ~10x faster than splitting 202,599 lines in Python
        table = np.loadtxt(
            path, dtype=np.int8, skiprows=names_line, comments=None, ndmin=2, converters={0: lambda _: 0}
        )  # (N, 1 + K)
    except ValueError:  # lines of different lengths, or a value that is not an integer
        table = None
    if table is None or table.shape[1] != len(names) + 1 or not np.isin(table[:, 1:], (-1, 1)).all():
        for n, line in enumerate(lines[names_line:], start=names_line + 1):
            fields = line.split()
            if fields and (len(fields) != len(names) + 1 or not set(fields[1:]) <= {"-1", "1"}):
                raise DataError(f"{path}, line {n}: expected {expected}; got {' '.join(fields)[:200]!r}")
        raise DataError(f"{path}: expected lines of {expected}")  # not reached: some line is malformed
    values = (table[:, 1:] == 1).astype(np.int64)  # (N, K): 1 stays 1, -1 becomes 0
    return names, dict(zip(files, values, strict=True))


def read_partition(path: Path) -> dict[str, int]:
    """``list_eval_partition.txt`` as {file name: 0 train, 1 validation, 2 test}.

    Raises:
        ValueError: a line is not ``NAME PARTITION`` with a partition of 0, 1 or 2 (names the line).
    """
    partition: dict[str, int] = {}
    for number, line in enumerate(Path(path).read_text().splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 2 or fields[1] not in ("0", "1", "2"):
            raise DataError(
                f"{path}, line {number}: expected 'NAME PARTITION' with PARTITION 0 (train), 1 (validation) "
                f"or 2 (test), e.g. '000001.jpg 0'; got {line!r}"
            )
        partition[fields[0]] = int(fields[1])
    if not partition:
        raise DataError(f"{path} is empty; expected lines like '000001.jpg 0'")
    return partition


class CelebADataModule(ImageFolderDataModule):
    """CelebA's aligned faces (``img_align_celeba/``: 202,599 JPEGs of 178x218), prepared as in the study.

    Each image is center-cropped to ``crop_size`` (148) and resized to ``image_size`` (64). The split is
    the study's seeded 75/25 random split of all images; ``official_split`` uses CelebA's
    ``list_eval_partition.txt`` instead (train / validation / test, the test split for ``test``).
    A folder whose files are not named like CelebA's (``000001.jpg``) is refused as a wrong layout.

    Attributes: when ``list_attr_celeba.txt`` is found (looked for like the partition file, and in
    ``Anno/``), batches carry ``"attributes"`` (B, 40) int64, 1 where CelebA says 1 and 0 where it says
    -1, named by ``attribute_names`` (after ``setup``). No file: no attributes, one info line. An image
    the file does not list: no attributes, one warning naming it.

    Args:
        root: The folder holding ``img_align_celeba/`` (and ``list_eval_partition.txt``), or
            ``img_align_celeba/`` itself.
        official_split: Use the official partition instead of the study's random 75/25 split.
        partition_file: Path of ``list_eval_partition.txt``; ``None``: looked for in ``root``, next to
            ``img_align_celeba/`` and in their ``Eval/`` folders.
        attributes: Read the 40 binary attributes when their file is there.
        attribute_file: Path of ``list_attr_celeba.txt`` (then it must exist); ``None``: looked for in
            ``root``, next to ``img_align_celeba/`` and in their ``Anno/`` folders.
        crop_size: Center crop in source pixels before resizing (the study: 148).
        image_size: Height and width after resizing (the study: 64).
        **kwargs: ``ImageFolderDataModule`` and ``ImageDataModule`` arguments.
    """

    def __init__(
        self,
        root: str = "data/celeba",
        official_split: bool = False,
        partition_file: str | None = None,
        attributes: bool = True,
        attribute_file: str | None = None,
        crop_size: int | None = 148,
        image_size: int = 64,
        **kwargs: Any,
    ) -> None:
        super().__init__(root=root, crop_size=crop_size, image_size=image_size, **kwargs)
        self.official_split = official_split
        self.partition_file = Path(partition_file).expanduser() if partition_file else None
        self.attributes = attributes
        self.attribute_file = Path(attribute_file).expanduser() if attribute_file else None
        self.attribute_names: tuple[str, ...] = ()

    def image_root(self) -> Path:
        nested = self.root / "img_align_celeba"
        return nested if nested.is_dir() else self.root

    def layout(self) -> str:
        return (
            "Expected layout (CelebA's aligned images, unzipped from img_align_celeba.zip, "
            "https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html):\n"
            f"  {self.root}/\n"
            "    img_align_celeba/000001.jpg\n"
            "    img_align_celeba/000002.jpg  ... 202599.jpg\n"
            f"    {PARTITION_FILE}         (only for official_split)\n"
            f"    {ATTRIBUTE_FILE}         (optional: the 40 attributes)\n"
            "root may also name img_align_celeba/ itself."
        )

    def list_files(self) -> list[Path]:
        files = super().list_files()
        if not any(CELEBA_NAME.match(f.name) for f in files):
            names = ", ".join(str(f.relative_to(self.image_root())) for f in files[:3])
            raise MissingFileError(
                f"{self.image_root()} does not look like CelebA: none of its {len(files)} images is named "
                f"like 000001.jpg (found {names}).\n{self.layout()}"
            )
        return files

    def find_partition_file(self) -> Path:
        """The official partition file; raises ``FileNotFoundError`` naming every place looked at."""
        if self.partition_file is not None:
            candidates = [self.partition_file]
        else:
            folders = dict.fromkeys([self.root, self.image_root().parent])
            candidates = [f / name for f in folders for name in (PARTITION_FILE, f"Eval/{PARTITION_FILE}")]
        for candidate in candidates:
            if candidate.is_file():
                return candidate
        raise MissingFileError(
            f"official_split needs CelebA's {PARTITION_FILE}; looked at {', '.join(map(str, candidates))}. "
            f"Download it from the CelebA page (Eval/{PARTITION_FILE}) or set partition_file.\n{self.layout()}"
        )

    def find_attribute_file(self) -> Path | None:
        """The attribute file, or ``None`` when it is in none of the usable places.

        Raises:
            FileNotFoundError: ``attribute_file`` was given and does not exist.
        """
        if self.attribute_file is not None:
            if not self.attribute_file.is_file():
                raise MissingFileError(
                    f"attribute_file {self.attribute_file} does not exist; it is CelebA's Anno/{ATTRIBUTE_FILE} "
                    f"(from the CelebA page), or set attribute_file to null to look for it.\n{self.layout()}"
                )
            return self.attribute_file
        folders = dict.fromkeys([self.root, self.image_root().parent])
        candidates = [f / name for f in folders for name in (ATTRIBUTE_FILE, f"Anno/{ATTRIBUTE_FILE}")]
        found = [c for c in candidates if c.is_file()]
        if not found:
            rank_zero_info(
                f"CelebA: no {ATTRIBUTE_FILE} (looked at {', '.join(map(str, candidates))}): batches carry no "
                "attributes."
            )
        return found[0] if found else None

    def fields(self, entry: CacheEntry) -> dict[str, torch.Tensor]:
        """``{"attributes": (N, K) int64}`` following the cached rows, when the attribute file is there."""
        self.attribute_names = ()
        path = self.find_attribute_file() if self.attributes else None
        if path is None:
            return {}
        names, by_file = read_attributes(path)
        files = [Path(entry.sources[source].path).name for source in entry.row_source.tolist()]
        unlisted = [name for name in files if name not in by_file]
        if unlisted:
            rank_zero_warn(
                f"{len(unlisted)} image(s) in {self.image_root()} are not in {path} (e.g. {', '.join(unlisted[:3])}): "
                "batches carry no attributes. Use the matching attribute file, or attributes: false to silence this."
            )
            return {}
        self.attribute_names = names
        return {"attributes": torch.from_numpy(np.stack([by_file[name] for name in files]))}  # (N, K)

    def split(self, dataset: Dataset) -> tuple[list[int], list[int], list[int] | None]:
        if not self.official_split:
            return super().split(dataset)
        path = self.find_partition_file()
        partition = read_partition(path)
        entry = self.cache_entry
        present = {Path(s.path).name for s in entry.sources}
        missing = sorted(partition.keys() - present)
        if missing:
            raise MissingFileError(
                f"{path} lists {len(missing)} image(s) that are not in {self.image_root()}: "
                f"{', '.join(missing[:10])}{' ...' if len(missing) > 10 else ''}.\n{self.layout()}"
            )
        parts: dict[int, list[int]] = {0: [], 1: [], 2: []}
        unlisted = 0
        for row, source in enumerate(entry.row_source.tolist()):
            name = Path(entry.sources[source].path).name
            if name in partition:
                parts[partition[name]].append(row)
            else:
                unlisted += 1
        if unlisted:
            rank_zero_warn(f"{unlisted} image(s) in {self.image_root()} are not in {path} and are left out.")
        empty = [PARTITIONS[p] for p in (0, 1) if not parts[p]]
        if empty:
            raise DataError(f"the official split from {path} has no readable {' or '.join(empty)} images")
        return parts[0], parts[1], parts[2] or None
