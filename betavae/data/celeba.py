"""CelebA's aligned faces, cropped and resized as the study did, with its split or the official one."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from lightning.pytorch.utilities import rank_zero_warn
from torch.utils.data import Dataset

from betavae.data.folder import ImageFolderDataModule

CELEBA_NAME = re.compile(r"^\d{6}\.(jpg|png)$", re.IGNORECASE)
PARTITION_FILE = "list_eval_partition.txt"
PARTITIONS = {0: "train", 1: "validation", 2: "test"}


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
            raise ValueError(
                f"{path}, line {number}: expected 'NAME PARTITION' with PARTITION 0 (train), 1 (validation) "
                f"or 2 (test), e.g. '000001.jpg 0'; got {line!r}"
            )
        partition[fields[0]] = int(fields[1])
    if not partition:
        raise ValueError(f"{path} is empty; expected lines like '000001.jpg 0'")
    return partition


class CelebADataModule(ImageFolderDataModule):
    """CelebA's aligned faces (``img_align_celeba/``: 202,599 JPEGs of 178x218), prepared as in the study.

    Each image is center-cropped to ``crop_size`` (148) and resized to ``image_size`` (64). The split is
    the study's seeded 75/25 random split of all images; ``official_split`` uses CelebA's
    ``list_eval_partition.txt`` instead (train / validation / test, the test split for ``test``).
    A folder whose files are not named like CelebA's (``000001.jpg``) is refused as a wrong layout.

    Args:
        root: The folder holding ``img_align_celeba/`` (and ``list_eval_partition.txt``), or
            ``img_align_celeba/`` itself.
        official_split: Use the official partition instead of the study's random 75/25 split.
        partition_file: Path of ``list_eval_partition.txt``; ``None``: looked for in ``root``, next to
            ``img_align_celeba/`` and in their ``Eval/`` folders.
        crop_size: Center crop in source pixels before resizing (the study: 148).
        image_size: Height and width after resizing (the study: 64).
        **kwargs: ``ImageFolderDataModule`` and ``ImageDataModule`` arguments.
    """

    def __init__(
        self,
        root: str = "data/celeba",
        official_split: bool = False,
        partition_file: str | None = None,
        crop_size: int | None = 148,
        image_size: int = 64,
        **kwargs: Any,
    ) -> None:
        super().__init__(root=root, crop_size=crop_size, image_size=image_size, **kwargs)
        self.official_split = official_split
        self.partition_file = Path(partition_file).expanduser() if partition_file else None

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
            "root may also name img_align_celeba/ itself."
        )

    def list_files(self) -> list[Path]:
        files = super().list_files()
        if not any(CELEBA_NAME.match(f.name) for f in files):
            names = ", ".join(str(f.relative_to(self.image_root())) for f in files[:3])
            raise FileNotFoundError(
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
        raise FileNotFoundError(
            f"official_split needs CelebA's {PARTITION_FILE}; looked at {', '.join(map(str, candidates))}. "
            f"Download it from the CelebA page (Eval/{PARTITION_FILE}) or set partition_file.\n{self.layout()}"
        )

    def split(self, dataset: Dataset) -> tuple[list[int], list[int], list[int] | None]:
        if not self.official_split:
            return super().split(dataset)
        path = self.find_partition_file()
        partition = read_partition(path)
        entry = self.cache_entry
        present = {Path(s.path).name for s in entry.sources}
        missing = sorted(partition.keys() - present)
        if missing:
            raise FileNotFoundError(
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
            raise ValueError(f"the official split from {path} has no readable {' or '.join(empty)} images")
        return parts[0], parts[1], parts[2] or None
