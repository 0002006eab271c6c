"""The study's and the textbook's datasets: CelebA, Stanford Cars, image folders, batik, textures, (Fashion-)MNIST."""

from __future__ import annotations

import os
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from conftest import write_broken_images, write_idx, write_idx_set, write_images
from PIL import Image
from torchvision import transforms as T
from torchvision.datasets.mnist import read_image_file, read_label_file
from torchvision.transforms import v2

from betavae.data import (
    BadImagesError,
    BatikDataModule,
    CelebADataModule,
    FashionMNISTDataModule,
    ImageFolderDataModule,
    MNISTDataModule,
    StanfordCarsDataModule,
    TexturesDataModule,
    random_patches,
    read_idx,
)
from betavae.data.batik import patch_counts
from betavae.data.textures import load_texture


def ready(dm):
    dm.prepare_data()
    dm.setup("fit")
    return dm


def celeba_folder(root: Path, count: int = 8, size: tuple[int, int] = (178, 218)) -> Path:
    folder = root / "img_align_celeba"
    for i, path in enumerate(write_images(folder, count, size=size, suffix=".jpg", seed=5)):
        path.rename(folder / f"{i + 1:06d}.jpg")
    return folder


def find_patch(source: torch.Tensor, patch: torch.Tensor) -> list[tuple[int, int]]:
    """Every (top, left) where ``patch`` (C, p, p) occurs exactly in ``source`` (C, H, W): brute force."""
    p = patch.shape[-1]
    windows = source.unfold(1, p, 1).unfold(2, p, 1)  # (C, H - p + 1, W - p + 1, p, p)
    hits = (windows == patch[:, None, None]).all(dim=(0, 3, 4)).nonzero()
    return [tuple(hit) for hit in hits.tolist()]


# ---------------------------------------------------------------- every module: split and transforms
def make_folder(tmp_path):
    write_images(tmp_path / "cats", 12, size=(50, 40))
    return ImageFolderDataModule(root=str(tmp_path / "cats"), image_size=16)


def make_celeba(tmp_path):
    celeba_folder(tmp_path / "celeba", count=12)
    return CelebADataModule(root=str(tmp_path / "celeba"), image_size=16)


def make_cars(tmp_path):
    write_images(tmp_path / "cars" / "cars_train", 12, size=(60, 40), suffix=".jpg")
    return StanfordCarsDataModule(root=str(tmp_path / "cars"), image_size=16)


def make_batik(tmp_path):
    write_images(tmp_path / "batik", 3, size=(90, 70), mode="L")
    return BatikDataModule(root=str(tmp_path / "batik"), num_patches=12, patch_size=32, image_size=16)


def make_textures(tmp_path):
    return TexturesDataModule(num_patches=12, patch_size=32, image_size=16)


def make_mnist(tmp_path):
    write_idx_set(tmp_path / "mnist", n_train=12)
    return MNISTDataModule(root=str(tmp_path / "mnist"), download=False, image_size=16)


FACTORIES = [make_folder, make_celeba, make_cars, make_batik, make_textures, make_mnist]


@pytest.mark.parametrize("make", FACTORIES, ids=lambda f: f.__name__[5:])
def test_every_module_splits_75_25_disjoint_and_seeded(make, tmp_path):
    dm = ready(make(tmp_path))
    n = len(dm.dataset)
    assert n == 12
    train, val = set(dm.train_set.indices), set(dm.val_set.indices)
    assert len(val) == 3 and len(train) == 9 and train.isdisjoint(val) and train | val == set(range(n))
    assert dm.test_set is dm.val_set  # no official test split by default
    batch = next(iter(dm.val_dataloader()))
    assert batch["image"].dtype == torch.uint8 and batch["image"].shape[1:] == (dm.num_channels, 16, 16)
    assert dm.prepare_batch(batch)["image"].dtype == torch.float32
    assert batch["index"].tolist() == dm.val_set.indices[: len(batch["index"])]
    again = ready(make(tmp_path / "again"))
    assert again.val_set.indices == dm.val_set.indices


@pytest.mark.parametrize("make", FACTORIES, ids=lambda f: f.__name__[5:])
def test_only_mnist_is_not_flipped(make, tmp_path):
    assert make(tmp_path).flip == (make is not make_mnist)  # a mirrored digit is no digit


@pytest.mark.parametrize("make", FACTORIES, ids=lambda f: f.__name__[5:])
def test_training_images_are_the_validation_images_or_their_mirror(make, tmp_path):
    dm = ready(make(tmp_path))
    reference = v2.Compose([v2.ToDtype(torch.float32, scale=True), v2.Normalize(dm.mean, dm.std)])
    torch.manual_seed(0)
    batch = next(iter(dm.train_dataloader()))
    seen = dm.prepare_batch(batch, train=True)["image"]
    for image, index in zip(seen, batch["index"].tolist(), strict=True):
        plain = reference(dm.dataset[index]["image"])  # torchvision's per-image transforms
        assert torch.equal(image, plain) or torch.equal(image, plain.flip(-1))


# ---------------------------------------------------------------- CelebA
def test_celeba_is_cropped_to_148_and_resized_to_64_as_the_study_did(tmp_path):
    celeba_folder(tmp_path / "celeba", count=3)
    dm = ready(CelebADataModule(root=str(tmp_path / "celeba")))
    study = T.Compose([T.CenterCrop(148), T.Resize(64), T.PILToTensor()])  # the study's PIL pipeline
    for row, path in enumerate(dm.dataset_files()):
        with Image.open(path) as img:
            reference = study(img.convert("RGB")).float()
        ours = dm.dataset[row]["image"].float()
        assert ours.shape == (3, 64, 64)
        assert (ours - reference).abs().mean() < 1.0 and (ours - reference).abs().max() <= 8


def test_celeba_root_may_be_the_parent_or_the_image_folder(tmp_path):
    folder = celeba_folder(tmp_path / "celeba", count=4)
    parent = ready(CelebADataModule(root=str(tmp_path / "celeba"), image_size=16))
    direct = ready(CelebADataModule(root=str(folder), image_size=16))
    assert parent.dataset_files() == direct.dataset_files() == sorted(folder.glob("*.jpg"))


def test_celeba_official_partition_gives_train_validation_and_test(tmp_path):
    celeba_folder(tmp_path / "celeba", count=10)
    lines = [f"{i:06d}.jpg {0 if i <= 6 else 1 if i <= 8 else 2}" for i in range(1, 11)]
    (tmp_path / "celeba" / "list_eval_partition.txt").write_text("\n".join(lines) + "\n")
    dm = ready(CelebADataModule(root=str(tmp_path / "celeba"), image_size=16, official_split=True))
    files = dm.dataset_files()
    names = lambda subset: sorted(files[i].name for i in subset.indices)  # noqa: E731
    assert names(dm.train_set) == [f"{i:06d}.jpg" for i in range(1, 7)]
    assert names(dm.val_set) == ["000007.jpg", "000008.jpg"]
    assert names(dm.test_set) == ["000009.jpg", "000010.jpg"]
    assert len(next(iter(dm.test_dataloader()))["image"]) == 2


def test_celeba_official_split_problems_are_named(tmp_path):
    celeba_folder(tmp_path / "celeba", count=4)
    dm = CelebADataModule(root=str(tmp_path / "celeba"), image_size=16, official_split=True)
    with pytest.raises(FileNotFoundError, match="list_eval_partition.txt; looked at") as err:
        ready(dm)
    assert "Eval/list_eval_partition.txt" in str(err.value)

    partition = tmp_path / "celeba" / "list_eval_partition.txt"
    partition.write_text("000001.jpg 0\n000002.jpg 1\n000099.jpg 2\n000100.jpg 0\n")
    with pytest.raises(FileNotFoundError, match="lists 2 image.* not in .*: 000099.jpg, 000100.jpg"):
        ready(CelebADataModule(root=str(tmp_path / "celeba"), image_size=16, official_split=True))

    partition.write_text("000001.jpg 0\n000002.jpg train\n")
    with pytest.raises(ValueError, match="line 2: expected 'NAME PARTITION'"):
        ready(CelebADataModule(root=str(tmp_path / "celeba"), image_size=16, official_split=True))


def test_celeba_wrong_layouts_name_the_path_and_the_layout(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError) as err:
        ready(CelebADataModule(root=str(missing)))
    assert str(missing) in str(err.value) and "img_align_celeba/000001.jpg" in str(err.value)

    zipped = tmp_path / "zipped"
    zipped.mkdir()
    (zipped / "img_align_celeba.zip").write_bytes(b"PK")
    with pytest.raises(FileNotFoundError, match=r"extract the archive img_align_celeba.zip first"):
        ready(CelebADataModule(root=str(zipped)))

    write_images(tmp_path / "cats", 3)
    with pytest.raises(FileNotFoundError, match="does not look like CelebA.*img_0000.png"):
        ready(CelebADataModule(root=str(tmp_path / "cats")))


# ---------------------------------------------------------------- Stanford Cars
def test_cars_file_list_selects_the_subset(tmp_path):
    root = tmp_path / "stanford_cars"
    files = write_images(root / "cars_train", 8, size=(60, 40), suffix=".jpg")
    listing = tmp_path / "front.txt"
    listing.write_text(
        "# front-left and front-right views\n"
        "cars_train/img_0005.jpg\n\n"
        "cars_train/img_0001.jpg\n"
        f"{files[3]}\n"  # absolute, inside the root
        "cars_train/img_0001.jpg\n"  # a repeat counts once
        "./cars_train/img_0006.jpg\n"
    )
    dm = ready(StanfordCarsDataModule(root=str(root), file_list=str(listing), image_size=16))
    assert dm.dataset_files() == [files[1], files[3], files[5], files[6]]
    everything = ready(StanfordCarsDataModule(root=str(root), image_size=16))
    assert len(everything.dataset) == 8 and everything.cache_entry.folder != dm.cache_entry.folder


def test_cars_file_list_problems_are_named(tmp_path):
    root = tmp_path / "stanford_cars"
    write_images(root / "cars_train", 3, suffix=".jpg")
    listing = tmp_path / "front.txt"

    listing.write_text("cars_train/img_0000.jpg\ncars_train/09999.jpg\ncars_test/00001.jpg\n")
    with pytest.raises(FileNotFoundError, match=r"names 2 file\(s\) missing under .*: cars_train/09999.jpg, cars_test"):
        ready(StanfordCarsDataModule(root=str(root), file_list=str(listing)))

    listing.write_text("../elsewhere/x.jpg\n")
    with pytest.raises(FileNotFoundError, match=r"outside the root.*\.\./elsewhere/x.jpg"):
        ready(StanfordCarsDataModule(root=str(root), file_list=str(listing)))

    listing.write_text("# nothing\n\n")
    with pytest.raises(ValueError, match="names no file"):
        ready(StanfordCarsDataModule(root=str(root), file_list=str(listing)))

    with pytest.raises(FileNotFoundError, match="does not exist.*\n.*Expected layout"):
        ready(StanfordCarsDataModule(root=str(root), file_list=str(tmp_path / "absent.txt")))


# ---------------------------------------------------------------- any folder (cat faces)
def test_every_image_mode_and_small_images_become_rgb_rows(tmp_path):
    root = tmp_path / "cats"
    root.mkdir()
    rgb = np.zeros((40, 30, 3), np.uint8)
    rgb[:, :15] = (250, 120, 10)
    base = Image.fromarray(rgb)
    base.save(root / "rgb.jpg", quality=95)
    base.convert("L").save(root / "gray.png")
    base.convert("RGBA").save(root / "rgba.png")
    base.convert("P").save(root / "palette.png")
    base.convert("CMYK").save(root / "cmyk.tif")
    Image.fromarray(np.asarray(base.convert("L")).astype(np.uint16) * 257).save(root / "deep.png")  # 16-bit
    Image.new("RGB", (6, 5), (200, 200, 200)).save(root / "tiny.png")  # smaller than the crop
    dm = ready(ImageFolderDataModule(root=str(root), image_size=16, crop_size=24))
    assert len(dm.dataset) == 7 and dm.cache_entry.bad == []
    rows = {f.name: dm.dataset[i]["image"] for i, f in enumerate(dm.dataset_files())}
    for name, row in rows.items():
        assert row.shape == (3, 16, 16) and row.dtype == torch.uint8
        if name != "tiny.png":
            assert row[:, 8, 1].float().mean() > 90 and row[:, 8, 14].float().mean() < 10, name
    assert (rows["tiny.png"].int() - 200).abs().max() <= 1  # resized up, never padded with black


def test_exif_rotation_is_honoured_in_the_cache(tmp_path):
    root = tmp_path / "photos"
    root.mkdir()
    tall = np.zeros((40, 20, 3), np.uint8)
    tall[:20] = 255
    exif = Image.Exif()
    exif[0x0112] = 6  # shown rotated 90° clockwise: the white top ends up on the right
    Image.fromarray(tall).save(root / "r.jpg", exif=exif.tobytes(), quality=95)
    Image.fromarray(tall).save(root / "s.jpg", quality=95)
    Image.fromarray(tall).save(root / "t.jpg", quality=95)  # 3 images: the fewest a training split allows
    dm = ready(ImageFolderDataModule(root=str(root), image_size=16, channels=1))
    rotated = dm.dataset[dm.dataset_files().index(root / "r.jpg")]["image"][0].float()
    assert rotated[:, -1].mean() > 200 and rotated[:, 0].mean() < 50


def test_missing_and_empty_folders_fail_at_setup(tmp_path):
    for root, match in ((tmp_path / "absent", "does not exist"), (tmp_path / "empty", "it is empty")):
        if root.name == "empty":
            root.mkdir()
        with pytest.raises(FileNotFoundError, match=match) as err:
            ImageFolderDataModule(root=str(root)).prepare_data()
        assert str(root) in str(err.value) and "Expected layout" in str(err.value)


# ---------------------------------------------------------------- batik and textures
def test_patch_counts_spread_48_images_into_2400_patches_evenly():
    assert patch_counts(2400, 48) == [50] * 48
    assert patch_counts(10, 4) == [3, 3, 2, 2] and sum(patch_counts(7, 3)) == 7


def test_random_patches_are_crops_of_their_sources():
    rng = np.random.default_rng(1)
    sources = [torch.from_numpy(rng.integers(0, 256, (1, h, w), dtype=np.uint8)) for h, w in ((40, 50), (35, 30))]
    patches, owner = random_patches(sources, num_patches=9, patch_size=12, image_size=12, seed=3)
    assert patches.shape == (9, 1, 12, 12) and owner.tolist() == [0] * 5 + [1] * 4
    for patch, k in zip(patches, owner.tolist(), strict=True):
        assert len(find_patch(sources[k], patch)) == 1
    again, _ = random_patches(sources, num_patches=9, patch_size=12, image_size=12, seed=3)
    other, _ = random_patches(sources, num_patches=9, patch_size=12, image_size=12, seed=4)
    assert torch.equal(patches, again) and not torch.equal(patches, other)


def test_random_patches_resize_sources_smaller_than_a_patch():
    patches, _ = random_patches([torch.full((1, 10, 20), 77, dtype=torch.uint8)], 3, 16, 8, seed=0)
    assert patches.shape == (3, 1, 8, 8) and (patches == 77).all()


def test_batik_makes_num_patches_the_same_on_every_run(tmp_path):
    write_images(tmp_path / "batik", 4, size=(120, 90), mode="L", seed=2)
    kwargs = {"root": str(tmp_path / "batik"), "num_patches": 50, "patch_size": 40, "image_size": 16}
    first = ready(BatikDataModule(**kwargs, cache_dir=str(tmp_path / "a")))
    second = ready(BatikDataModule(**kwargs, cache_dir=str(tmp_path / "b")))  # rebuilt from scratch
    other = ready(BatikDataModule(**kwargs, patch_seed=1, cache_dir=str(tmp_path / "a")))
    assert first.cache_entry.built and second.cache_entry.built and other.cache_entry.built
    a, b = np.array(first.dataset.images), np.array(second.dataset.images)
    assert a.shape == (50, 1, 16, 16) and np.array_equal(a, b)
    assert not np.array_equal(a, np.array(other.dataset.images))
    assert torch.bincount(first.dataset.labels).tolist() == [13, 13, 12, 12]
    assert len(first.train_set) == 38 and len(first.val_set) == 12


def test_batik_patches_come_from_the_decoded_sources(tmp_path):
    files = write_images(tmp_path / "batik", 2, size=(60, 50), mode="L", seed=6)
    dm = ready(BatikDataModule(root=str(tmp_path / "batik"), num_patches=6, patch_size=16, image_size=16))
    for row in range(6):
        item = dm.dataset[row]
        with Image.open(files[item["label"]]) as img:
            source = torch.from_numpy(np.array(img.convert("L")))[None]
        assert find_patch(source, item["image"])


def test_batik_skips_an_unreadable_source_and_still_makes_every_patch(tmp_path):
    write_images(tmp_path / "batik", 3, size=(80, 80), mode="L")
    write_broken_images(tmp_path / "batik")
    kwargs = {"root": str(tmp_path / "batik"), "num_patches": 30, "patch_size": 32, "image_size": 16}
    with pytest.raises(BadImagesError, match="4 of 7 image files"):
        ready(BatikDataModule(**kwargs))
    with pytest.warns(UserWarning, match="4 of 7 image files"):
        dm = ready(BatikDataModule(**kwargs, max_bad_fraction=0.6))
    assert len(dm.dataset) == 30 and torch.bincount(dm.dataset.labels).tolist() == [10, 10, 10]


def test_textures_are_seeded_patches_of_scikit_image_textures():
    dm = ready(TexturesDataModule(num_patches=30, patch_size=16, image_size=16, split_seed=1))
    assert len(dm.dataset) == 30 and torch.bincount(dm.dataset.labels).tolist() == [10, 10, 10]
    assert dm.dataset.images.shape == (30, 1, 16, 16)
    for row in (0, 15, 29):
        item = dm.dataset[row]
        source = load_texture(dm.textures[item["label"]], channels=1)
        assert find_patch(source, item["image"])
    again = ready(TexturesDataModule(num_patches=30, patch_size=16, image_size=16))
    assert torch.equal(dm.dataset.images, again.dataset.images)
    rgb = ready(TexturesDataModule(textures=["brick"], num_patches=4, image_size=16, channels=3))
    assert rgb.dataset.images.shape == (4, 3, 16, 16)


def test_unknown_texture_names_the_bundled_ones():
    with pytest.raises(ValueError, match="'bricks' is not an image of skimage.data.*brick, grass, gravel"):
        ready(TexturesDataModule(textures=["bricks"], num_patches=4))
    with pytest.raises(ValueError, match="download_all"):
        load_texture("download_all", 1)


# ---------------------------------------------------------------- MNIST and Fashion-MNIST
def test_read_idx_agrees_with_torchvision(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (5, 28, 28), dtype=np.uint8)
    labels = np.array([3, 1, 4, 1, 5], np.uint8)
    write_idx(tmp_path / "i", images)
    write_idx(tmp_path / "l", labels)
    assert np.array_equal(read_idx(tmp_path / "i"), read_image_file(str(tmp_path / "i")).numpy())
    assert np.array_equal(read_idx(tmp_path / "l"), read_label_file(str(tmp_path / "l")).numpy())
    write_idx(tmp_path / "i.gz", images)
    assert np.array_equal(read_idx(tmp_path / "i.gz"), images)


def test_read_idx_names_broken_files(tmp_path):
    path = write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((4, 28, 28), np.uint8))
    os.truncate(path, path.stat().st_size - 10)
    with pytest.raises(ValueError, match="train-images-idx3-ubyte is truncated.*header says \\(4, 28, 28\\)"):
        read_idx(path)
    path.write_bytes(b"\x89PNG not idx")
    with pytest.raises(ValueError, match="not a uint8 IDX file: its magic number is 89504e47"):
        read_idx(path)
    (tmp_path / "bad.gz").write_bytes(b"not gzip")
    with pytest.raises(ValueError, match="bad.gz could not be read"):
        read_idx(tmp_path / "bad.gz")


@pytest.mark.parametrize("layout", ["flat_gz", "flat_plain", "torchvision"])
def test_fashion_mnist_reads_idx_files_with_labels(tmp_path, layout):
    root = tmp_path / "fashion"
    folder = root / "FashionMNIST" / "raw" if layout == "torchvision" else root
    write_idx_set(folder, n_train=16, n_test=4, gz=layout == "flat_gz")
    dm = ready(FashionMNISTDataModule(root=str(root), download=False, batch_size=20))
    assert len(dm.dataset) == 20 and dm.classes[9] == "Ankle boot"
    raw = np.concatenate([read_idx(next(folder.glob(f"{p}-images*"))) for p in ("train", "t10k")])
    images = dm.dataset.images  # (N, 1, 32, 32): 2 zero pixels around the 28x28 digits
    assert images.shape == (20, 1, 32, 32) and images[:, :, :2].max() == 0 and images[:, :, :, -2:].max() == 0
    assert np.array_equal(images[:, 0, 2:30, 2:30].numpy(), raw)
    batch = next(iter(dm.val_dataloader()))
    expected = np.concatenate([np.arange(16) % 10, np.arange(4) % 10])  # write_idx_set's labels, train then t10k
    assert batch["label"].tolist() == expected[dm.val_set.indices].tolist()


def test_mnist_official_split_and_resizing(tmp_path):
    write_idx_set(tmp_path / "mnist", n_train=10, n_test=6)
    kwargs = {"download": False, "official_split": True, "padding": 0, "image_size": 16, "channels": 3}
    dm = ready(MNISTDataModule(root=str(tmp_path / "mnist"), **kwargs))
    assert dm.train_set.indices == list(range(10)) and dm.val_set.indices == list(range(10, 16))
    assert dm.test_set.indices == dm.val_set.indices
    assert dm.dataset.images.shape == (16, 3, 16, 16)
    only_train = tmp_path / "train_only"
    write_idx_set(only_train, n_train=8)
    with pytest.raises(FileNotFoundError, match="official_split needs t10k-images-idx3-ubyte"):
        ready(MNISTDataModule(root=str(only_train), download=False, official_split=True))


def test_missing_idx_files_say_what_to_put_where(tmp_path):
    root = tmp_path / "fashion"
    with pytest.raises(FileNotFoundError) as err:
        ready(FashionMNISTDataModule(root=str(root), download=False))
    message = str(err.value)
    assert "missing train-images-idx3-ubyte, train-labels-idx1-ubyte" in message
    assert str(root) in message and str(root / "FashionMNIST" / "raw") in message
    assert "fashion-mnist" in message and "train-images-idx3-ubyte.gz" in message
    write_idx_set(root, n_train=8, n_test=3)
    (root / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(FileNotFoundError, match="half of the test pair is missing: t10k-labels-idx1-ubyte"):
        ready(FashionMNISTDataModule(root=str(root), download=False))


@pytest.mark.parametrize("error", [RuntimeError("Error downloading: no network"), urllib.error.URLError("no network")])
def test_a_failed_download_says_what_to_put_where(tmp_path, monkeypatch, error):
    class Offline(torchvision.datasets.FashionMNIST):
        def __init__(self, *args, **kwargs):
            raise error  # what torchvision raises without internet

    monkeypatch.setattr(FashionMNISTDataModule, "torchvision_class", Offline)
    with pytest.raises(FileNotFoundError, match="the download failed .*no network.*; put train-images-idx3-ubyte"):
        ready(FashionMNISTDataModule(root=str(tmp_path / "f"), download=True))


def test_download_uses_torchvision_only_when_files_are_missing(tmp_path, monkeypatch):
    calls = []

    class Recorder(torchvision.datasets.MNIST):
        def __init__(self, root, train, download):
            calls.append((root, train, download))
            if len(calls) == 2:  # "downloaded": write the files where torchvision puts them
                write_idx_set(Path(root) / "Recorder" / "raw", n_train=8, n_test=4, gz=False)

    monkeypatch.setattr(MNISTDataModule, "torchvision_class", Recorder)
    dm = ready(MNISTDataModule(root=str(tmp_path / "m"), download=True))
    assert calls == [(str(tmp_path / "m"), True, True), (str(tmp_path / "m"), False, True)]
    assert len(dm.dataset) == 12
    ready(MNISTDataModule(root=str(tmp_path / "m"), download=True))
    assert len(calls) == 2  # files present: no second download
