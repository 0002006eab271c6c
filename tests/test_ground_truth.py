"""Ground truth on the data modules: factor grids (shapes, dSprites, 3D Shapes) and the uniform accessor the
metrics use (``ground_truth_kind``, ``observed_factors``). dSprites and 3D Shapes are tested on small files
written in the real formats. CelebA's attributes and Stanford Cars' labels: ``test_attributes_and_labels.py``."""

from __future__ import annotations

import pickle
from pathlib import Path

import h5py
import numpy as np
import pytest
import scipy.stats
import torch
from conftest import (
    DSPRITES_TINY_SIZES,
    SHAPES3D_TINY_SIZES,
    grid_classes,
    write_dsprites,
    write_idx_set,
    write_shapes3d,
)
from PIL import Image

from betavae.data import (
    DSpritesDataModule,
    ImageFolderDataModule,
    MNISTDataModule,
    Shapes3DDataModule,
    ShapesDataModule,
    render_shapes,
    sample_factors,
)
from betavae.data.dsprites import DSPRITES_FILE
from betavae.data.ground_truth import (
    GroundTruthData,
    check_factor_indices,
    factor_rows,
    factors_of_rows,
    ground_truth_kind,
    observed_factors,
    uniform_factors,
)
from betavae.data.shapes import FACTOR_VALUES


def ready(dm):
    dm.prepare_data()
    dm.setup("fit")
    return dm


def dsprites_module(tmp_path: Path, **kwargs) -> DSpritesDataModule:
    write_dsprites(tmp_path / "dsprites" / DSPRITES_FILE)
    return DSpritesDataModule(root=str(tmp_path / "dsprites"), batch_size=8, **kwargs)


def shapes3d_module(tmp_path: Path, **kwargs) -> Shapes3DDataModule:
    write_shapes3d(tmp_path / "3dshapes" / "3dshapes.h5")
    return Shapes3DDataModule(root=str(tmp_path / "3dshapes"), batch_size=8, **kwargs)


def shapes_module(tmp_path: Path, **kwargs) -> ShapesDataModule:
    return ShapesDataModule(**{"num_images": 40, "image_size": 16, "batch_size": 8, **kwargs})


FACTOR_MODULES = {
    "shapes": (shapes_module, ("shape", "scale", "orientation", "pos_x", "pos_y"), (3, 6, 40, 32, 32)),
    "dsprites": (dsprites_module, ("shape", "scale", "orientation", "pos_x", "pos_y"), DSPRITES_TINY_SIZES[1:]),
    "shapes3d": (
        shapes3d_module,
        ("floor_hue", "wall_hue", "object_hue", "scale", "shape", "orientation"),
        SHAPES3D_TINY_SIZES,
    ),
}


# ---------------------------------------------------------------- grid arithmetic
def test_factor_rows_are_the_mixed_radix_numbers_of_the_dsprites_file():
    sizes = (1, 3, 6, 40, 32, 32)  # color, shape, scale, orientation, pos_x, pos_y
    # by hand: bases 3*6*40*32*32, 6*40*32*32 = 245760, 40*32*32 = 40960, 32*32 = 1024, 32, 1
    assert factor_rows(np.array([[0, 1, 2, 3, 4, 5]]), sizes).tolist() == [245760 + 2 * 40960 + 3 * 1024 + 4 * 32 + 5]
    assert factor_rows(np.array([[0, 2, 5, 39, 31, 31]]), sizes).tolist() == [737279]
    rows = np.random.default_rng(0).integers(0, 737280, 500)
    assert np.array_equal(factor_rows(factors_of_rows(rows, sizes), sizes), rows)


def test_factor_indices_are_checked_and_the_bad_column_named():
    sizes = (3, 4)
    assert check_factor_indices(torch.tensor([[2, 3]]), sizes).dtype == np.int64
    with pytest.raises(ValueError, match=r"factor column 1 holds 4, outside its indices 0 \.\. 3"):
        factor_rows(np.array([[0, 1], [1, 4]]), sizes)
    with pytest.raises(ValueError, match=r"\(n, 2\)"):
        factor_rows(np.array([0, 1]), sizes)
    with pytest.raises(ValueError, match="integers"):
        factor_rows(np.array([[0.5, 1.0]]), sizes)


def test_uniform_factors_are_seeded_and_uniform():
    sizes = (3, 6, 40)
    a = uniform_factors(30_000, sizes, np.random.default_rng(7))
    assert np.array_equal(a, uniform_factors(30_000, sizes, np.random.default_rng(7)))
    assert a.dtype == np.int64 and a.shape == (30_000, 3)
    for k, size in enumerate(sizes):
        counts = np.bincount(a[:, k], minlength=size)
        assert len(counts) == size and scipy.stats.chisquare(counts).pvalue > 1e-3
    assert abs(np.corrcoef(a[:, 0], a[:, 1])[0, 1]) < 0.03  # independent columns


# ---------------------------------------------------------------- every factor module
@pytest.mark.parametrize("kind", FACTOR_MODULES)
def test_factor_modules_implement_the_protocol_before_setup(kind, tmp_path):
    make, names, sizes = FACTOR_MODULES[kind]
    dm = make(tmp_path)
    assert isinstance(dm, GroundTruthData) and ground_truth_kind(dm) == "factors"
    assert tuple(dm.factor_names) == names and tuple(dm.factor_sizes) == tuple(sizes)
    assert set(dm.factor_values) == set(names)
    assert [len(dm.factor_values[n]) for n in names] == list(sizes)
    factors = dm.sample_factors(6, np.random.default_rng(3))
    assert factors.dtype == np.int64 and factors.shape == (6, len(sizes))
    assert np.array_equal(factors, dm.sample_factors(6, np.random.default_rng(3)))
    images = dm.images_of(factors)  # right after construction, no setup
    assert images.dtype == torch.uint8 and images.shape == (6, dm.num_channels, dm.image_size, dm.image_size)
    assert dm.dataset is None


@pytest.mark.parametrize("kind", FACTOR_MODULES)
def test_images_of_are_the_pixels_the_module_trains_on(kind, tmp_path):
    dm = ready(FACTOR_MODULES[kind][0](tmp_path, image_size=16, channels=3))
    items = [dm.dataset[i] for i in range(len(dm.dataset))[::-3]]  # the training images, uint8
    factors = torch.stack([item["factors"] for item in items])
    assert torch.equal(dm.images_of(factors), torch.stack([item["image"] for item in items]))
    assert torch.equal(dm.images_of(factors[:1].numpy())[0], items[0]["image"])  # one at a time: the same


@pytest.mark.parametrize("kind", FACTOR_MODULES)
def test_factor_batches_carry_indices_and_the_shape_label(kind, tmp_path):
    dm = ready(FACTOR_MODULES[kind][0](tmp_path))
    batch = next(iter(dm.train_dataloader()))
    k = len(dm.factor_sizes)
    assert batch["factors"].dtype == torch.int64 and batch["factors"].shape == (8, k)
    assert (batch["factors"] >= 0).all() and (batch["factors"] < torch.tensor(dm.factor_sizes)).all()
    assert batch["label"].dtype == torch.int64 and torch.equal(
        batch["label"], batch["factors"][:, list(dm.factor_names).index("shape")]
    )
    assert batch["image"].dtype == torch.uint8 and batch["image"].shape[1:] == (dm.num_channels, *[dm.image_size] * 2)
    codes, names = observed_factors(batch, dm)
    assert names == tuple(dm.factor_names) and np.array_equal(codes, batch["factors"].numpy())


def test_shapes_images_of_render_the_grid_values():
    dm = ShapesDataModule(image_size=32, channels=3, supersample=2)
    factors = np.array([[0, 5, 0, 0, 31], [2, 0, 10, 16, 3], [1, 3, 39, 31, 0]])
    values = torch.stack([FACTOR_VALUES[n][torch.from_numpy(factors[:, k])] for k, n in enumerate(dm.factor_names)], 1)
    expected = render_shapes(values, image_size=32, supersample=2).expand(-1, 3, -1, -1)
    assert torch.equal(dm.images_of(factors), expected)
    assert dm.factor_values["scale"][5] == 1.0 and dm.factor_values["pos_x"][31] == 1.0


def test_shapes_dataset_stores_indices_whose_values_are_the_old_factor_values():
    dm = ready(ShapesDataModule(num_images=30, image_size=16, seed=4))
    indices = dm.dataset.factors
    assert indices.dtype == torch.int64
    values = torch.stack(
        [torch.from_numpy(dm.factor_values[n])[indices[:, k]] for k, n in enumerate(dm.factor_names)], 1
    )
    assert torch.equal(values.float(), sample_factors(30, seed=4))  # the same draw as before indices


# ---------------------------------------------------------------- dSprites
def test_dsprites_images_of_are_the_stored_images_scaled_to_255(tmp_path):
    dm = dsprites_module(tmp_path)
    with np.load(tmp_path / "dsprites" / DSPRITES_FILE) as npz:
        imgs, classes, values = npz["imgs"], npz["latents_classes"], npz["latents_values"]
    rows = np.array([0, 5, 77, 215, 100])
    images = dm.images_of(classes[rows, 1:])  # the file's classes without the constant color
    assert torch.equal(images[:, 0], torch.from_numpy(imgs[rows]) * 255)
    assert dm.factor_values["orientation"].tolist() == sorted(set(values[:, 3].tolist()))
    assert dm.factor_values["shape"].tolist() == [1.0, 2.0, 3.0]  # the file's values


def test_dsprites_cache_is_bit_packed_and_reused(tmp_path, monkeypatch):
    dm = dsprites_module(tmp_path)
    reader = dm.images()
    assert reader.shape == (216, 1, 64, 8) and reader.path.stat().st_size == 216 * 64 * 8  # 8 pixels a byte
    again = DSpritesDataModule(root=str(tmp_path / "dsprites" / DSPRITES_FILE))  # root may name the file

    def no_rebuild(*args):
        raise AssertionError("the cache was built again")

    monkeypatch.setattr(DSpritesDataModule, "cache_rows", no_rebuild)
    assert again.images().path == reader.path
    restored = pickle.loads(pickle.dumps(again.images()))  # a spawned worker's copy maps the file again
    assert torch.equal(restored.read(np.array([3, 1])), reader.read(np.array([3, 1])))


def test_dsprites_subset_and_split(tmp_path):
    dm = ready(dsprites_module(tmp_path, num_images=40, seed=1))
    rows = dm.dataset.rows
    assert len(rows) == 40 and len(set(rows.tolist())) == 40 and np.all(np.diff(rows) > 0)
    assert len(dm.train_set) == 30 and len(dm.val_set) == 10
    assert np.array_equal(ready(dsprites_module(tmp_path, num_images=40, seed=1)).dataset.rows, rows)
    assert len(ready(dsprites_module(tmp_path)).dataset) == 216  # None: every image
    with pytest.raises(ValueError, match="num_images=500, but .* holds 216 images"):
        ready(dsprites_module(tmp_path, num_images=500))


def test_missing_dsprites_file_says_what_to_put_where(tmp_path):
    dm = DSpritesDataModule(root=str(tmp_path / "nowhere"))
    for use in (lambda: dm.setup("fit"), lambda: dm.images_of(np.zeros((1, 5), np.int64)), lambda: dm.factor_sizes):
        with pytest.raises(FileNotFoundError) as err:
            use()
        message = str(err.value)
        assert DSPRITES_FILE in message and str(tmp_path / "nowhere" / DSPRITES_FILE) in message
        assert "https://github.com/google-deepmind/dsprites-dataset" in message and "Put the file there" in message


@pytest.mark.parametrize(
    ("broken", "match"),
    [
        ({"imgs": None}, r"lacks the key\(s\) imgs"),
        ({"latents_classes": grid_classes(DSPRITES_TINY_SIZES)[:, :5]}, r"latents_classes is int64 \(216, 5\)"),
        ({"imgs": np.zeros((216, 64, 32), np.uint8)}, r"imgs is uint8 \(216, 64, 32\)"),
        ({"imgs": np.full((216, 64, 64), 2, np.uint8)}, "other than 0 and 1"),
        (
            {"latents_classes": grid_classes(DSPRITES_TINY_SIZES)[::-1].copy()},
            "not the complete 1 x 3 x 2 x 4 x 3 x 3 grid",
        ),
        (
            {"latents_classes": grid_classes(DSPRITES_TINY_SIZES)[:-1]},
            r"latents_classes is int64 \(215, 6\); expected \(216, 6\) for the 216",
        ),
    ],
    ids=["no-imgs", "5-latents", "wrong-image-shape", "not-binary", "shuffled", "short-classes"],
)
def test_broken_dsprites_files_are_named(tmp_path, broken, match):
    write_dsprites(tmp_path / DSPRITES_FILE, **broken)
    with pytest.raises(ValueError, match=match):
        ready(DSpritesDataModule(root=str(tmp_path)))


def test_truncated_dsprites_file_is_named(tmp_path):
    path = write_dsprites(tmp_path / DSPRITES_FILE)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(ValueError, match=f"{DSPRITES_FILE} is not a readable npz file.*download"):
        ready(DSpritesDataModule(root=str(tmp_path)))


# ---------------------------------------------------------------- 3D Shapes
def test_shapes3d_images_of_are_the_stored_images(tmp_path):
    dm = shapes3d_module(tmp_path)
    with h5py.File(tmp_path / "3dshapes" / "3dshapes.h5") as f:
        images, labels = f["images"][()], f["labels"][()]
    rows = np.array([0, 1, 14, 287, 150])
    factors = factors_of_rows(rows, SHAPES3D_TINY_SIZES)
    assert torch.equal(dm.images_of(factors), torch.from_numpy(images[rows]).permute(0, 3, 1, 2))
    for k, name in enumerate(dm.factor_names):  # the values are the file's labels of those rows
        assert np.array_equal(dm.factor_values[name][factors[:, k]], labels[rows, k])
    gray = Shapes3DDataModule(root=str(tmp_path / "3dshapes"), channels=1, image_size=32).images_of(factors)
    # PIL as the reference: ITU-R 601 luma, then its antialiased bilinear (triangle-filter) reduction
    pil = [np.asarray(Image.fromarray(image).convert("L").resize((32, 32), Image.BILINEAR)) for image in images[rows]]
    assert gray.shape == (5, 1, 32, 32) and np.abs(gray[:, 0].int().numpy() - np.stack(pil)).max() <= 1


def test_missing_shapes3d_file_says_what_to_put_where(tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        ready(Shapes3DDataModule(root=str(tmp_path / "data")))
    message = str(err.value)
    assert str(tmp_path / "data" / "3dshapes.h5") in message and "Put the file there" in message
    assert "https://storage.googleapis.com/3d-shapes/3dshapes.h5" in message
    assert "https://github.com/google-deepmind/3d-shapes" in message


@pytest.mark.parametrize(
    ("broken", "match"),
    [
        ({"labels": None}, r"lacks the dataset\(s\) labels"),
        ({"images": np.zeros((288, 64, 64, 4), np.uint8)}, r"images is uint8 \(288, 64, 64, 4\)"),
        ({"labels": np.zeros((288, 5))}, r"labels is float64 \(288, 5\)"),
        ({"labels": "shuffled"}, "not in mixed-radix order"),
        ({"labels": "constant-scale"}, "= 144 combinations of values, but there are 288 images"),
    ],
    ids=["no-labels", "4-channels", "5-factors", "shuffled", "incomplete"],
)
def test_broken_shapes3d_files_are_named(tmp_path, broken, match):
    path = write_shapes3d(tmp_path / "3dshapes.h5")
    if isinstance(broken.get("labels"), str):
        with h5py.File(path) as f:
            labels = f["labels"][()]
        if broken["labels"] == "shuffled":
            labels = labels[np.random.default_rng(0).permutation(len(labels))]
        else:
            labels[:, 3] = 1.0
        broken = {"labels": labels}
    write_shapes3d(path, **broken)
    with pytest.raises(ValueError, match=match):
        ready(Shapes3DDataModule(root=str(tmp_path)))


def test_truncated_shapes3d_file_is_named(tmp_path):
    path = write_shapes3d(tmp_path / "3dshapes.h5")
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(ValueError, match="3dshapes.h5 is not a readable HDF5 file.*download"):
        ready(Shapes3DDataModule(root=str(tmp_path)))


# ---------------------------------------------------------------- the uniform accessor
def test_ground_truth_kind_of_label_and_plain_modules(tmp_path, image_folder):
    write_idx_set(tmp_path / "mnist", n_train=12)
    mnist = ready(MNISTDataModule(root=str(tmp_path / "mnist"), download=False, batch_size=4))
    assert ground_truth_kind(mnist) == "labels"
    batch = next(iter(mnist.val_dataloader()))
    codes, names = observed_factors(batch, mnist)
    assert names == ("class",) and np.array_equal(codes[:, 0], batch["label"].numpy())
    folder = ready(ImageFolderDataModule(root=str(image_folder), image_size=16, batch_size=4))
    assert ground_truth_kind(folder) is None
    with pytest.raises(ValueError, match="ImageFolderDataModule has no ground truth"):
        observed_factors(next(iter(folder.val_dataloader())), folder)
    with pytest.raises(ValueError, match="has factors, but the batch has no 'factors'"):
        observed_factors({"image": torch.zeros(2, 1, 4, 4)}, ShapesDataModule())
