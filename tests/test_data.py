import math

import numpy as np
import pytest
import torch
from conftest import conv_nets
from PIL import Image
from torchvision.transforms import v2

from betavae.data import (
    ImageFolderDataModule,
    IndexedSubset,
    ShapesDataModule,
    TensorImageDataset,
    find_images,
    load_image,
    render_shapes,
    sample_factors,
    split_indices,
)
from betavae.data.base import normalize_images
from betavae.data.shapes import HALF_SIZE


# ---------------------------------------------------------------- split
@pytest.mark.parametrize("n", [2, 3, 10, 101, 1000])
def test_split_is_disjoint_covering_and_75_25(n):
    train, val = split_indices(n, 0.25, seed=7)
    assert set(train).isdisjoint(val)
    assert sorted(train + val) == list(range(n))
    assert len(val) == min(max(round(n * 0.25), 1), n - 1)


def test_split_is_the_same_for_the_same_seed_and_differs_across_seeds():
    assert split_indices(500, 0.25, seed=1) == split_indices(500, 0.25, seed=1)
    assert split_indices(500, 0.25, seed=1) != split_indices(500, 0.25, seed=2)


def test_split_rejects_nonsense():
    with pytest.raises(ValueError, match="at least 2"):
        split_indices(1, 0.25, 0)
    with pytest.raises(ValueError, match="val_fraction"):
        split_indices(10, 1.5, 0)


def test_datamodule_split_and_loaders():
    dm = ShapesDataModule(num_images=40, image_size=16, batch_size=8, split_seed=3)
    dm.setup("fit")
    train_idx = {dm.train_set[i]["index"] for i in range(len(dm.train_set))}
    val_idx = {dm.val_set[i]["index"] for i in range(len(dm.val_set))}
    assert len(val_idx) == 10 and len(train_idx) == 30 and train_idx.isdisjoint(val_idx)
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape == (8, 1, 16, 16) and batch["image"].dtype == torch.uint8  # a quarter of the bytes
    assert batch["factors"].shape == (8, 5) and batch["label"].shape == (8,)
    prepared = dm.prepare_batch(batch)
    assert prepared["image"].dtype == torch.float32 and prepared["factors"] is batch["factors"]
    assert dm.prepare_batch(prepared) is prepared  # already prepared: left alone
    dm2 = ShapesDataModule(num_images=40, image_size=16, batch_size=8, split_seed=3)
    dm2.setup("fit")
    assert dm2.val_set.indices == dm.val_set.indices


def test_training_batches_differ_from_validation_ones_only_by_the_flip():
    dm = ShapesDataModule(num_images=40, image_size=16, batch_size=40, channels=3, flip=True)
    dm.setup("fit")
    batch = next(iter(dm.val_dataloader()))
    plain = dm.prepare_batch(batch)["image"]
    torch.manual_seed(0)
    trained = dm.prepare_batch(batch, train=True)["image"]
    flipped = [torch.equal(t, p.flip(-1)) and not torch.equal(t, p) for t, p in zip(trained, plain, strict=True)]
    same = [torch.equal(t, p) for t, p in zip(trained, plain, strict=True)]
    assert all(f or s for f, s in zip(flipped, same, strict=True)) and 0 < sum(flipped) < 40
    assert not ShapesDataModule().flip  # shapes: a flip would contradict pos_x and orientation


def test_datamodule_rejects_bad_settings():
    with pytest.raises(ValueError, match="channels"):
        ShapesDataModule(channels=2)
    with pytest.raises(ValueError, match="one value per channel"):
        ShapesDataModule(channels=1, mean=(0.1, 0.2, 0.3), std=(1.0, 1.0, 1.0))


# ---------------------------------------------------------------- shapes
def centroid(image: torch.Tensor) -> tuple[float, float]:
    w = image.float().squeeze(0)
    ys, xs = torch.meshgrid(torch.arange(w.shape[0]).float(), torch.arange(w.shape[1]).float(), indexing="ij")
    return float((w * xs).sum() / w.sum()), float((w * ys).sum() / w.sum())


def principal_angle(image: torch.Tensor) -> float:
    """Angle of the main axis, counter-clockwise as displayed (image y points down)."""
    w = image.float().squeeze(0)
    ys, xs = torch.meshgrid(torch.arange(w.shape[0]).float(), torch.arange(w.shape[1]).float(), indexing="ij")
    cx, cy = centroid(image)
    dx, dy = xs - cx, -(ys - cy)
    cov = torch.tensor([[(w * dx * dx).sum(), (w * dx * dy).sum()], [(w * dx * dy).sum(), (w * dy * dy).sum()]])
    vals, vecs = torch.linalg.eigh(cov)
    v = vecs[:, 1]
    return math.atan2(float(v[1]), float(v[0])) % math.pi


def test_shapes_are_deterministic_per_seed():
    a = ShapesDataModule(num_images=20, image_size=32, seed=5).build_dataset()
    b = ShapesDataModule(num_images=20, image_size=32, seed=5).build_dataset()
    c = ShapesDataModule(num_images=20, image_size=32, seed=6).build_dataset()
    assert torch.equal(a.images, b.images) and torch.equal(a.factors, b.factors)
    assert not torch.equal(a.images, c.images)


def test_factors_come_from_the_dsprites_grid():
    f = sample_factors(5000, seed=0)
    assert set(f[:, 0].unique().tolist()) == {0.0, 1.0, 2.0}
    assert len(f[:, 1].unique()) == 6 and len(f[:, 2].unique()) == 40
    assert len(f[:, 3].unique()) == 32 and len(f[:, 4].unique()) == 32
    assert f[:, 3].min() == 0 and f[:, 3].max() == 1


def test_position_factors_move_the_centroid():
    # shape, scale, orientation, pos_x, pos_y
    rows = torch.tensor(
        [[0, 1, 0, 0, 0.5], [0, 1, 0, 0.5, 0.5], [0, 1, 0, 1, 0.5], [2, 0.8, 1, 0.5, 0], [2, 0.8, 1, 0.5, 1]]
    )
    images = render_shapes(rows, image_size=64)
    xs = [centroid(im)[0] for im in images[:3]]
    assert xs[0] < xs[1] < xs[2] and xs[2] - xs[0] > 20
    assert abs(xs[1] - 31.5) < 0.5  # pos_x 0.5 is the image centre (pixel centres 0..63)
    assert centroid(images[4])[1] - centroid(images[3])[1] > 20  # pos_y 1 is lower in the image


def test_scale_and_shape_set_the_drawn_area():
    s = 64
    h = HALF_SIZE * s  # half-size of a scale-1 shape in pixels
    rows = torch.tensor([[0, 1, 0, 0.5, 0.5], [0, 0.5, 0, 0.5, 0.5], [1, 1, 0, 0.5, 0.5]])
    area = render_shapes(rows, image_size=s, supersample=8).float().sum(dim=(1, 2, 3)) / 255
    assert area[0] == pytest.approx((2 * h) ** 2, rel=0.02)  # square
    assert area[1] == pytest.approx((2 * h * 0.5) ** 2, rel=0.03)  # scale 0.5 quarters the area
    assert area[2] == pytest.approx(math.pi * h * h / 2, rel=0.03)  # ellipse with semi-axes h, h/2


def test_geometry_is_dsprites(tmp_path):
    """dSprites' geometry as measured from its images: centres at 16..48 px of 64 (one pixel per position
    step), a scale-1 square 0.3 of the width (19.2 px), scale 0.5 half that; nothing near the border."""
    rows = torch.tensor([[0, 1, 0, 0, 0], [0, 1, 0, 1, 1], [0, 1, 0, 1 / 31, 0], [0, 0.5, 0, 0.5, 0.5]])
    images = render_shapes(rows, image_size=64, supersample=8)
    (x0, y0), (x1, y1), (x2, _) = (centroid(im) for im in images[:3])
    # pixel i covers [i, i + 1): a centre at 16 px is the centroid 15.5 in pixel-index coordinates
    assert (x0, y0) == (pytest.approx(15.5, abs=0.01), pytest.approx(15.5, abs=0.01))
    assert (x1, y1) == (pytest.approx(47.5, abs=0.01), pytest.approx(47.5, abs=0.01))
    assert x2 - x0 == pytest.approx(32 / 31, abs=1 / 16)  # within the 8x supersampling
    widths = (images[[0, 3]].float() / 255).sum(dim=2).amax(dim=(1, 2))  # the square's height = side
    assert widths.tolist() == [pytest.approx(19.2, abs=1 / 8), pytest.approx(9.6, abs=1 / 8)]
    rotated = torch.tensor([[k, 1, math.pi / 4, x, y] for k in range(3) for x in (0, 1) for y in (0, 1)])
    reach = (render_shapes(rotated, image_size=64) > 0).nonzero()[:, 2:]
    assert reach.min() >= 2 and reach.max() <= 61  # at most 0.15 * sqrt(2) * 64 = 13.6 px from 16 and 48


def test_orientation_turns_the_shape_counter_clockwise():
    for theta in (0.0, math.pi / 6, math.pi / 3, math.pi / 2):
        image = render_shapes(torch.tensor([[1, 1, theta, 0.5, 0.5]]), image_size=64)[0]
        got = principal_angle(image)
        assert min(abs(got - theta), math.pi - abs(got - theta)) < 0.03


def test_no_shape_leaves_the_frame():
    rows = torch.tensor([[k, 1, t, x, y] for k in range(3) for t in (0.3, 0.8) for x in (0, 1) for y in (0, 1)])
    images = render_shapes(rows, image_size=32)
    border = torch.cat([images[..., 0, :], images[..., -1, :], images[..., :, 0], images[..., :, -1]], dim=-1)
    assert border.max() == 0 and (images.flatten(1).max(1).values == 255).all()


def test_three_channel_shapes_repeat_the_gray_image():
    ds = ShapesDataModule(num_images=4, image_size=16, channels=3).build_dataset()
    assert ds[0]["image"].shape == (3, 16, 16)
    assert torch.equal(ds[0]["image"][0], ds[0]["image"][2])


# ---------------------------------------------------------------- image folders
def test_find_images_is_recursive_and_sorted(image_folder):
    files = find_images(image_folder)
    assert len(files) == 12 and files == sorted(files)
    assert any(f.parent.name == "nested" for f in files)


def test_missing_folder_fails_with_the_path_and_the_layout(tmp_path):
    missing = tmp_path / "celeba" / "img_align_celeba"
    dm = ImageFolderDataModule(root=str(missing))
    with pytest.raises(FileNotFoundError) as err:
        dm.setup("fit")
    assert str(missing) in str(err.value) and "Expected layout" in str(err.value)


def test_empty_or_imageless_folder_fails_with_what_it_found(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="contains no images: it is empty"):
        find_images(tmp_path / "empty")
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "readme.txt").write_text("x")
    with pytest.raises(FileNotFoundError, match=r"1 other file\(s\), e.g. readme.txt"):
        find_images(tmp_path / "docs")


def test_folder_datamodule_gives_normalized_batches(image_folder):
    dm = ImageFolderDataModule(root=str(image_folder), image_size=16, batch_size=3)
    dm.setup("fit")
    assert len(dm.train_set) == 9 and len(dm.val_set) == 3
    batch = next(iter(dm.val_dataloader()))
    assert batch["image"].shape == (3, 3, 16, 16)


@pytest.mark.parametrize("mode", ["RGB", "L", "RGBA", "P", "CMYK", "I;16"])
def test_load_image_converts_every_mode(tmp_path, mode):
    rgb = np.zeros((30, 50, 3), np.uint8)
    rgb[:, :25] = (255, 128, 0)
    img = Image.fromarray(rgb, "RGB")
    if mode == "I;16":
        img = Image.fromarray(np.asarray(img.convert("L")).astype(np.uint16) * 257)  # 16-bit gray
        assert img.mode.startswith("I")
    else:
        img = img.convert(mode)
    path = tmp_path / ("x.tif" if mode in ("CMYK", "I;16") else "x.png")
    img.save(path)
    for channels in (1, 3):
        out = load_image(path, channels=channels, image_size=16)
        assert out.shape == (channels, 16, 16) and out.dtype == torch.uint8
    gray = load_image(path, channels=1, image_size=16)
    assert gray[0, 8, 1] > 100 and gray[0, 8, 14] < 5  # left half bright, right half dark


def test_load_image_crops_resizes_upward_and_honours_exif(tmp_path):
    tall = np.zeros((40, 20, 3), np.uint8)
    tall[:20] = 255  # white top half
    img = Image.fromarray(tall)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise on display: the white half ends up on the right
    img.save(tmp_path / "r.jpg", exif=exif.tobytes(), quality=95)
    out = load_image(tmp_path / "r.jpg", channels=1, image_size=64)  # 20x40 -> 64x128 -> crop 64x64
    assert out.shape == (1, 64, 64)
    assert out[0, :, -1].float().mean() > 200 and out[0, :, 0].float().mean() < 50
    cropped = load_image(tmp_path / "r.jpg", channels=1, image_size=8, crop_size=10)
    assert cropped.shape == (1, 8, 8)


# ---------------------------------------------------------------- batched reads and transforms
def test_batched_items_equal_single_items_without_augmentation():
    dm = ShapesDataModule(num_images=20, image_size=16, channels=3, split_seed=2)
    dm.setup("fit")
    positions = [4, 0, 3]
    batch = dm.val_set.__getitems__(positions)
    for item, position in zip(batch, positions, strict=True):
        single = dm.val_set[position]
        assert torch.equal(item["image"], single["image"]) and item["index"] == single["index"]
        assert torch.equal(item["factors"], single["factors"]) and item["label"] == single["label"]


def test_prepared_batches_equal_torchvisions_per_image_transforms_bit_for_bit():
    """Validation scores cannot change: the batched path after the transfer gives exactly the tensors of
    torchvision's per-image ``ToDtype(float32, scale=True)`` + ``Normalize`` (the old worker-side path)."""
    images = torch.randint(0, 256, (400, 3, 8, 8), dtype=torch.uint8)
    mean, std = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
    reference = v2.Compose([v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean, std)])
    plain = torch.stack([reference(image) for image in images])
    assert torch.equal(normalize_images(images, mean, std), plain)
    torch.manual_seed(0)
    out = normalize_images(images, mean, std, flip=True)
    pairs = list(zip(out, plain, strict=True))
    flipped = torch.tensor([torch.equal(o, p.flip(-1)) and not torch.equal(o, p) for o, p in pairs])
    same = torch.tensor([torch.equal(o, p) for o, p in pairs])
    assert (flipped | same).all()
    assert 150 < int(flipped.sum()) < 250  # p = 0.5, independently per image


def test_validation_scores_are_unchanged_by_the_uint8_path(tmp_path):
    """A model validated through Lightning (uint8 batches prepared by on_after_batch_transfer) scores what it
    scores on batches normalized image by image with torchvision's transforms."""
    import lightning as L

    from betavae.models import BetaVAE

    dm = ShapesDataModule(num_images=40, image_size=16, batch_size=5, channels=3)
    torch.manual_seed(0)
    model = BetaVAE(in_channels=3, image_size=16, **conv_nets(8, 16), latent_dim=4, mean=dm.mean, std=dm.std)
    trainer = L.Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path)
    logged = trainer.validate(model, dm, verbose=False)[0]["val/loss"]
    reference = v2.Compose([v2.ToDtype(torch.float32, scale=True), v2.Normalize(dm.mean, dm.std)])
    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for batch in dm.val_dataloader():
            batch = {**batch, "image": torch.stack([reference(image) for image in batch["image"]])}
            total += float(model.loss_parts(batch)["loss"]) * len(batch["image"])
            count += len(batch["image"])
    assert logged == pytest.approx(total / count, rel=1e-6)


def test_indexed_subset_reads_batches_like_single_items():
    dataset = TensorImageDataset(torch.randint(0, 256, (6, 1, 8, 8), dtype=torch.uint8), torch.arange(6))
    subset = IndexedSubset(dataset, [5, 1, 2])
    batch = subset.__getitems__([0, 2])
    assert [b["label"] for b in batch] == [5, 2] and [b["index"] for b in batch] == [5, 2]
    images = batch.collated["image"]  # NumPy: one buffer through a worker's pipe
    assert images.dtype == np.uint8 and images.shape == (2, 1, 8, 8)
    assert np.array_equal(images[1], dataset.images[2].numpy()) and batch.collated["label"].dtype == np.int64


def test_tensor_dataset_checks_its_inputs():
    with pytest.raises(ValueError, match="uint8"):
        TensorImageDataset(torch.zeros(2, 1, 4, 4))
    with pytest.raises(ValueError, match="3 labels for 2 images"):
        TensorImageDataset(torch.zeros(2, 1, 4, 4, dtype=torch.uint8), torch.arange(3))


def test_worker_batches_equal_the_single_items_collated():
    dm = ShapesDataModule(num_images=24, image_size=16, batch_size=5, num_workers=1, split_seed=4)
    dm.setup("fit")
    batches = list(dm.val_dataloader())  # built in a worker process, in shared memory
    expected = torch.utils.data.default_collate([dm.val_set[i] for i in range(5)])
    assert batches[0].keys() == expected.keys()
    for key, value in expected.items():
        assert torch.equal(batches[0][key], value), key
    assert sum(len(b["index"]) for b in batches) == 6
