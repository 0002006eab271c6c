"""Observed ground truth: CelebA's 40 attributes (``list_attr_celeba.txt``) and Stanford Cars' class labels
(the devkit's .mat files, written here with ``scipy.io.savemat`` in the devkit's layout), following the
cached rows, optional, and every broken file named."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch
from conftest import write_images

from betavae.data import CelebADataModule, StanfordCarsDataModule
from betavae.data.ground_truth import ground_truth_kind, observed_factors


def ready(dm):
    dm.prepare_data()
    dm.setup("fit")
    return dm


# ---------------------------------------------------------------- CelebA attributes
ATTRIBUTES = ("5_o_Clock_Shadow", "Arched_Eyebrows", "Attractive") + tuple(f"Attribute_{i}" for i in range(37))


def celeba_with_attributes(root: Path, count: int = 8, listed: int | None = None) -> np.ndarray:
    """CelebA-named images in ``root/img_align_celeba`` and ``root/list_attr_celeba.txt`` for the first
    ``listed`` of them; returns the -1/1 table written."""
    folder = root / "img_align_celeba"
    for i, path in enumerate(write_images(folder, count, size=(60, 70), suffix=".jpg", seed=3)):
        path.rename(folder / f"{i + 1:06d}.jpg")
    listed = count if listed is None else listed
    table = np.random.default_rng(0).choice([-1, 1], size=(listed, 40))
    rows = "".join(f"{i + 1:06d}.jpg " + " ".join(f"{v:2d}" for v in row) + "\n" for i, row in enumerate(table))
    (root / "list_attr_celeba.txt").write_text(f"{listed}\n{' '.join(ATTRIBUTES)}\n{rows}")
    return table


def test_celeba_batches_carry_the_attributes_of_their_files(tmp_path):
    table = celeba_with_attributes(tmp_path / "celeba")
    dm = ready(CelebADataModule(root=str(tmp_path / "celeba"), image_size=16, batch_size=4))
    assert dm.attribute_names == ATTRIBUTES and ground_truth_kind(dm) == "attributes"
    for i, file in enumerate(dm.dataset_files()):
        expected = (table[int(file.stem) - 1] == 1).astype(np.int64)
        assert np.array_equal(dm.dataset[i]["attributes"].numpy(), expected), file
    batch = next(iter(dm.val_dataloader()))
    assert batch["attributes"].dtype == torch.int64 and batch["attributes"].shape == (2, 40)
    codes, names = observed_factors(batch, dm)
    assert names == ATTRIBUTES and np.array_equal(codes, batch["attributes"].numpy())
    assert set(np.unique(codes).tolist()) <= {0, 1}


def test_celeba_attribute_file_is_optional_and_found_in_anno(tmp_path, caplog):
    celeba_with_attributes(tmp_path / "celeba")
    (tmp_path / "celeba" / "Anno").mkdir()
    (tmp_path / "celeba" / "list_attr_celeba.txt").rename(tmp_path / "celeba" / "Anno" / "list_attr_celeba.txt")
    assert ready(CelebADataModule(root=str(tmp_path / "celeba"), image_size=16)).attribute_names == ATTRIBUTES
    (tmp_path / "celeba" / "Anno" / "list_attr_celeba.txt").unlink()
    with caplog.at_level("INFO"):
        dm = ready(CelebADataModule(root=str(tmp_path / "celeba"), image_size=16))
    assert dm.attribute_names == () and "attributes" not in dm.dataset[0] and ground_truth_kind(dm) is None
    assert "no list_attr_celeba.txt" in caplog.text
    with pytest.raises(FileNotFoundError, match="attribute_file .*absent.txt does not exist"):
        ready(CelebADataModule(root=str(tmp_path / "celeba"), attribute_file=str(tmp_path / "absent.txt")))


def test_celeba_images_missing_from_the_attribute_file_are_named(tmp_path):
    celeba_with_attributes(tmp_path / "celeba", count=8, listed=6)
    with pytest.warns(UserWarning, match=r"2 image\(s\) .* are not in .*list_attr_celeba.txt \(e.g. 000007.jpg"):
        dm = ready(CelebADataModule(root=str(tmp_path / "celeba"), image_size=16))
    assert dm.attribute_names == () and "attributes" not in dm.dataset[0]


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("2\nA B\n000001.jpg 1 -1\n000002.jpg 1 0\n", "line 4: expected an image name and 2 values of -1 or 1"),
        ("2\nA B\n000001.jpg 1 -1 1\n000002.jpg 1 1\n", "line 3: expected"),
        ("2\nA B\n000001.jpg 1\n000002.jpg 1 1\n", "line 3: expected"),
        ("3\nA B\n000001.jpg 1 -1\n000002.jpg 1 1\n", "line 1 announces 3 images, the file lists 2"),
        ("A B\n000001.jpg 1 -1\n", "line 1: expected the number of images"),
    ],
    ids=["bad-value", "extra-column", "short-line", "truncated", "no-count"],
)
def test_malformed_attribute_files_name_the_line(tmp_path, text, match):
    celeba_with_attributes(tmp_path / "celeba", count=2)
    (tmp_path / "celeba" / "list_attr_celeba.txt").write_text(text)
    with pytest.raises(ValueError, match=match):
        ready(CelebADataModule(root=str(tmp_path / "celeba"), image_size=16))


# ---------------------------------------------------------------- Stanford Cars class labels
def write_annotations(path: Path, names: list[str], classes: list[int]) -> None:
    """A devkit annotation file as the real one: a 1 x N struct array with bbox_* (uint8), class, fname."""
    fields = ["bbox_x1", "bbox_y1", "bbox_x2", "bbox_y2", "class", "fname"]
    annotations = np.zeros((1, len(names)), dtype=[(f, "O") for f in fields])
    for i, (name, cls) in enumerate(zip(names, classes, strict=True)):
        annotations[0, i] = (np.uint8(1), np.uint8(2), np.uint8(30), np.uint8(20), np.uint8(cls), name)
    path.parent.mkdir(parents=True, exist_ok=True)
    scipy.io.savemat(path, {"annotations": annotations})


def write_meta(path: Path, count: int) -> list[str]:
    names = [f"Maker Model {k + 1} 2012" for k in range(count)]
    scipy.io.savemat(path, {"class_names": np.array([names], dtype=object)})  # a 1 x K cell array
    return names


def cars_with_devkit(root: Path, test_labels: bool = True) -> None:
    write_images(root / "cars_train", 6, size=(60, 40), suffix=".jpg")
    write_images(root / "cars_test", 4, size=(60, 40), suffix=".jpg", seed=8)  # the same names as train's
    devkit = root / "devkit"
    write_annotations(devkit / "cars_train_annos.mat", [f"img_{i:04d}.jpg" for i in range(6)], [1, 2, 3, 1, 2, 5])
    if test_labels:
        write_annotations(
            devkit / "cars_test_annos_withlabels.mat", [f"img_{i:04d}.jpg" for i in range(4)], [4, 4, 1, 2]
        )


def test_cars_labels_come_from_the_devkit_per_folder(tmp_path):
    cars_with_devkit(tmp_path / "cars")
    names = write_meta(tmp_path / "cars" / "devkit" / "cars_meta.mat", 5)
    dm = ready(StanfordCarsDataModule(root=str(tmp_path / "cars"), image_size=16, batch_size=4))
    assert dm.classes == names and ground_truth_kind(dm) == "labels"
    expected = {"cars_train": [0, 1, 2, 0, 1, 4], "cars_test": [3, 3, 0, 1]}
    for i, file in enumerate(dm.dataset_files()):
        assert dm.dataset[i]["label"] == expected[file.parent.name][int(file.stem[-4:])], file
    batch = next(iter(dm.train_dataloader()))
    assert batch["label"].dtype == torch.int64
    codes, column = observed_factors(batch, dm)
    assert column == ("class",) and codes.shape == (4, 1) and np.array_equal(codes[:, 0], batch["label"].numpy())


def test_cars_without_devkit_meta_or_test_labels(tmp_path):
    cars_with_devkit(tmp_path / "cars", test_labels=False)
    with pytest.warns(UserWarning, match=r"4 image\(s\) under .* have no class .*cars_test/img_0000.jpg"):
        dm = ready(StanfordCarsDataModule(root=str(tmp_path / "cars"), image_size=16))
    assert dm.classes == [] and "label" not in dm.dataset[0] and ground_truth_kind(dm) is None
    train_only = ready(StanfordCarsDataModule(root=str(tmp_path / "cars" / "cars_train"), image_size=16))
    assert train_only.classes == [f"class {k}" for k in range(1, 6)]  # no cars_meta.mat: numbered
    assert sorted(train_only.dataset[i]["label"] for i in range(6)) == [0, 0, 1, 1, 2, 4]
    plain = tmp_path / "plain"
    write_images(plain / "cars_train", 4, suffix=".jpg")
    assert ready(StanfordCarsDataModule(root=str(plain), image_size=16)).classes == []


def test_broken_devkit_files_are_named(tmp_path):
    cars_with_devkit(tmp_path / "cars")
    annos = tmp_path / "cars" / "devkit" / "cars_train_annos.mat"
    scipy.io.savemat(annos, {"annotations": np.zeros((1, 2), dtype=[("fname", "O"), ("bbox_x1", "O")])})
    with pytest.raises(ValueError, match="cars_train_annos.mat: annotations have the fields fname, bbox_x1"):
        ready(StanfordCarsDataModule(root=str(tmp_path / "cars"), image_size=16))
    scipy.io.savemat(annos, {"labels": np.zeros(3)})
    with pytest.raises(ValueError, match=r"cars_train_annos.mat has no 'annotations' \(it has labels\)"):
        ready(StanfordCarsDataModule(root=str(tmp_path / "cars"), image_size=16))
    annos.write_bytes(b"not a mat file at all")
    with pytest.raises(ValueError, match="is not a readable MATLAB file"):
        ready(StanfordCarsDataModule(root=str(tmp_path / "cars"), image_size=16))
