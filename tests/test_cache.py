"""The decoded cache: hits, stale and corrupt caches rebuilt, interrupted builds, bad files skipped and listed."""

from __future__ import annotations

import json
import os
import pickle
import warnings
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from conftest import write_broken_images, write_images
from lightning.pytorch.loggers import CSVLogger

from betavae.data import BadImagesError, CachedImageDataset, ImageFolderDataModule, default_cache_dir, load_image
from betavae.data.cache import DecodedCache
from betavae.data.cache_keys import Source, cache_key, file_digest


def folder_dm(root: Path, cache: Path, **kwargs) -> ImageFolderDataModule:
    kwargs = {"image_size": 16, "batch_size": 4, "cache_dir": str(cache), **kwargs}
    return ImageFolderDataModule(root=str(root), **kwargs)


def setup_dm(root: Path, cache: Path, **kwargs) -> ImageFolderDataModule:
    dm = folder_dm(root, cache, **kwargs)
    dm.prepare_data()
    dm.setup("fit")
    return dm


def cached_rows(dm: ImageFolderDataModule) -> np.ndarray:
    return np.array(dm.dataset.images)  # (N, C, S, S)


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    root = tmp_path / "photos"
    write_images(root, 10, size=(40, 30), seed=4, suffix=".jpg")
    return root


# ---------------------------------------------------------------- hits
def test_cached_rows_are_the_decoded_images(photos, tmp_path):
    dm = setup_dm(photos, tmp_path / "cache", crop_size=24)
    files = dm.dataset_files()
    assert len(files) == 10 and files == sorted(photos.glob("*.jpg"))
    expected = np.stack([load_image(f, channels=3, image_size=16, crop_size=24).numpy() for f in files])
    assert np.array_equal(cached_rows(dm), expected)
    assert dm.cache_entry.built


def test_a_second_run_reuses_the_cache(photos, tmp_path, monkeypatch):
    first = setup_dm(photos, tmp_path / "cache")
    calls = []
    monkeypatch.setattr(ImageFolderDataModule, "build_rows", lambda self, files: calls.append(files))
    second = setup_dm(photos, tmp_path / "cache")
    assert not calls and not second.cache_entry.built  # read, not decoded
    assert np.array_equal(cached_rows(first), cached_rows(second))
    assert first.val_set.indices == second.val_set.indices


def test_each_preprocessing_gets_its_own_cache(photos, tmp_path):
    small = setup_dm(photos, tmp_path / "cache", image_size=16)
    large = setup_dm(photos, tmp_path / "cache", image_size=32)
    gray = setup_dm(photos, tmp_path / "cache", image_size=16, channels=1)
    assert large.cache_entry.built and gray.cache_entry.built
    assert cached_rows(small).shape == (10, 3, 16, 16) and cached_rows(large).shape == (10, 3, 32, 32)
    assert cached_rows(gray).shape == (10, 1, 16, 16)
    assert len({small.cache_entry.folder, large.cache_entry.folder, gray.cache_entry.folder}) == 3
    assert not setup_dm(photos, tmp_path / "cache", image_size=16).cache_entry.built  # all three kept


def test_parallel_decoding_gives_the_same_cache(photos, tmp_path):
    serial = setup_dm(photos, tmp_path / "a", num_workers=0)
    parallel = setup_dm(photos, tmp_path / "b", num_workers=1)
    assert np.array_equal(cached_rows(serial), cached_rows(parallel))


def test_default_cache_dir_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("BETAVAE_CACHE_DIR", str(tmp_path / "mine"))
    assert default_cache_dir() == tmp_path / "mine"
    monkeypatch.delenv("BETAVAE_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "betavae"


def test_unwritable_cache_dir_is_a_clear_error(photos, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    with pytest.raises(PermissionError, match="cache_dir"):
        setup_dm(photos, blocker / "cache")


# ---------------------------------------------------------------- stale and corrupt caches
def test_added_removed_and_changed_files_rebuild_the_cache(photos, tmp_path, caplog):
    cache = tmp_path / "cache"
    setup_dm(photos, cache)
    write_images(photos / "more", 2, size=(40, 30), seed=8)
    added = setup_dm(photos, cache)
    assert added.cache_entry.built and len(added.dataset) == 12
    assert "stale: 2 file(s) added (e.g. more/img_0000.png" in caplog.text

    (photos / "img_0003.jpg").unlink()
    removed = setup_dm(photos, cache)
    assert removed.cache_entry.built and len(removed.dataset) == 11
    assert "1 file(s) removed (e.g. img_0003.jpg)" in caplog.text

    target = photos / "img_0005.jpg"
    write_images(tmp_path / "other", 1, size=(40, 30), seed=99, suffix=".jpg")[0].replace(target)
    os.utime(target, ns=(target.stat().st_atime_ns, target.stat().st_mtime_ns + 10**9))
    changed = setup_dm(photos, cache)
    assert changed.cache_entry.built and "1 file(s) changed (e.g. img_0005.jpg)" in caplog.text
    row = changed.dataset_files().index(target)
    assert np.array_equal(cached_rows(changed)[row], load_image(target, 3, 16).numpy())
    # one folder per source folder and preprocessing: the old keys' files are gone
    names = sorted(p.name.split("-")[0] for p in changed.cache_entry.folder.iterdir())
    assert names == ["images", "meta.json", "rows", "sources"]


def test_a_truncated_cache_file_is_rebuilt(photos, tmp_path, caplog):
    first = setup_dm(photos, tmp_path / "cache")
    expected = cached_rows(first)
    path = first.cache_entry.images_path
    os.truncate(path, path.stat().st_size - 100)
    second = setup_dm(photos, tmp_path / "cache")
    assert second.cache_entry.built and "corrupt" in caplog.text and "bytes, expected" in caplog.text
    assert np.array_equal(cached_rows(second), expected)


def test_overwritten_cache_content_is_rebuilt(photos, tmp_path, caplog):
    first = setup_dm(photos, tmp_path / "cache")
    expected = cached_rows(first)
    with open(first.cache_entry.images_path, "r+b") as f:  # same size, other bytes in the last row
        f.seek(-50, os.SEEK_END)
        f.write(bytes(50))
    second = setup_dm(photos, tmp_path / "cache")
    assert second.cache_entry.built and "does not match its digest" in caplog.text
    assert np.array_equal(cached_rows(second), expected)


def test_a_new_decoder_version_rebuilds_the_cache(photos, tmp_path, caplog, monkeypatch):
    setup_dm(photos, tmp_path / "cache")
    monkeypatch.setattr("betavae.data.cache_keys.decoder_versions", lambda: {"pillow": "99.0", "torchvision": "9.9"})
    assert setup_dm(photos, tmp_path / "cache").cache_entry.built
    assert "now {'pillow': '99.0'" in caplog.text


def test_unreadable_metadata_is_rebuilt(photos, tmp_path, caplog):
    first = setup_dm(photos, tmp_path / "cache")
    (first.cache_entry.folder / "meta.json").write_text("{ not json")
    assert setup_dm(photos, tmp_path / "cache").cache_entry.built and "unreadable" in caplog.text


def test_an_interrupted_build_is_never_used(photos, tmp_path, monkeypatch):
    real = ImageFolderDataModule.build_rows

    def interrupted(self, files):
        results, max_rows, row_shape = real(self, files)

        def stop_halfway():
            for i, item in enumerate(results):
                if i == 5:
                    raise KeyboardInterrupt
                yield item

        return stop_halfway(), max_rows, row_shape

    monkeypatch.setattr(ImageFolderDataModule, "build_rows", interrupted)
    with pytest.raises(KeyboardInterrupt):
        setup_dm(photos, tmp_path / "cache")
    monkeypatch.setattr(ImageFolderDataModule, "build_rows", real)
    folder = next((tmp_path / "cache").iterdir())
    assert not (folder / "meta.json").exists() and not list(folder.glob(".*.tmp"))
    dm = setup_dm(photos, tmp_path / "cache")
    assert dm.cache_entry.built and len(dm.dataset) == 10


def test_a_killed_build_leaves_no_temporary_behind(photos, tmp_path):
    dm = setup_dm(photos, tmp_path / "cache")
    folder = dm.cache_entry.folder
    import socket

    dead = folder / f".images-0123456789abcdef.{socket.gethostname()}.999999999.tmp"  # no such process
    dead.write_bytes(b"x" * 100)
    (folder / "meta.json").unlink()
    setup_dm(photos, tmp_path / "cache")
    assert not dead.exists()


def test_cache_key_covers_paths_sizes_times_and_preprocessing():
    base = [Source("a.jpg", 10, 1), Source("b.jpg", 20, 2)]
    key = cache_key(base, {"image_size": 64})
    assert key == cache_key(list(base), {"image_size": 64})
    variants = [
        [Source("a.jpg", 10, 1)],
        [Source("a.jpg", 11, 1), base[1]],
        [Source("a.jpg", 10, 5), base[1]],
        [Source("c.jpg", 10, 1), base[1]],
    ]
    assert all(cache_key(v, {"image_size": 64}) != key for v in variants)
    assert cache_key(base, {"image_size": 32}) != key


def test_file_digest_sees_every_byte(tmp_path, monkeypatch):
    monkeypatch.setattr("betavae.data.cache_keys.DIGEST_CHUNK", 1000)  # several chunks, and a byte on a chunk edge
    path = tmp_path / "rows.u8"
    data = np.random.default_rng(0).integers(0, 256, 16_000 + 7, dtype=np.uint8)
    path.write_bytes(data.tobytes())
    digest = file_digest(path)
    for position in (0, 999, 1000, 8_123, len(data) - 1):
        changed = data.copy()
        changed[position] ^= 1
        path.write_bytes(changed.tobytes())
        assert file_digest(path) != digest, position
    path.write_bytes(b"")
    assert file_digest(path) == file_digest(path)  # an empty file hashes too


def test_bytes_changed_in_the_middle_of_the_cache_are_seen_and_rebuilt(photos, tmp_path, caplog):
    first = setup_dm(photos, tmp_path / "cache")
    expected = cached_rows(first)
    path = first.cache_entry.images_path
    with open(path, "r+b") as f:  # one byte in the middle: not one of the rows a sample digest would read
        f.seek(path.stat().st_size // 2 + 3)
        byte = f.read(1)
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([byte[0] ^ 0xFF]))
    second = setup_dm(photos, tmp_path / "cache")
    assert second.cache_entry.built
    assert caplog.text.count("does not match its digest") == 1
    assert np.array_equal(cached_rows(second), expected)


# ---------------------------------------------------------------- bad files
def test_bad_files_are_skipped_counted_and_listed_once(tmp_path):
    root = tmp_path / "mixed"
    write_images(root, 96, size=(30, 30))
    broken = write_broken_images(root)
    trainer = L.Trainer(logger=CSVLogger(tmp_path / "runs", name="bad"), enable_progress_bar=False)
    dm = folder_dm(root, tmp_path / "cache", max_bad_fraction=0.05)
    dm.trainer = trainer
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dm.prepare_data()
        dm.setup("fit")
        for _ in range(2):  # epochs read the cache: no decoding, no new warning
            for _batch in dm.train_dataloader():
                pass
    messages = [str(w.message) for w in caught if "could not be read" in str(w.message)]
    assert len(messages) == 1
    assert "4 of 100 image files" in messages[0] and "(4.0%)" in messages[0] and "bad_images.txt" in messages[0]
    assert len(dm.dataset) == 96 and len(dm.train_set) + len(dm.val_set) == 96
    listed = Path(trainer.log_dir) / "bad_images.txt"
    lines = listed.read_text().splitlines()
    assert sorted(line.split("\t")[0] for line in lines) == sorted(map(str, broken))
    reasons = dict(line.split("\t") for line in lines)
    assert "truncated" in reasons[str(root / "truncated.jpg")]
    assert "UnidentifiedImageError" in reasons[str(root / "notes.jpg")]
    assert all(f not in broken for f in dm.dataset_files())


def test_bad_files_are_reported_again_from_the_cache(tmp_path):
    root = tmp_path / "mixed"
    write_images(root, 40, size=(30, 30))
    write_broken_images(root)
    with pytest.warns(UserWarning, match="4 of 44 image files"):
        setup_dm(root, tmp_path / "cache", max_bad_fraction=0.2)
    with pytest.warns(UserWarning, match="4 of 44 image files"):
        again = setup_dm(root, tmp_path / "cache", max_bad_fraction=0.2)
    assert not again.cache_entry.built
    assert len(again.cache_entry.bad_list_path.read_text().splitlines()) == 4  # the list, without a trainer


def test_too_many_bad_files_stop_setup_with_the_count_and_the_list(tmp_path):
    root = tmp_path / "mostly_broken"
    write_images(root, 6, size=(30, 30))
    write_broken_images(root)
    with pytest.raises(BadImagesError, match=r"4 of 10 image files .*\(40.0%\).*max_bad_fraction=0.01") as err:
        setup_dm(root, tmp_path / "cache")
    assert "bad_files-" in str(err.value) and "truncated" in str(err.value)
    # the same cache, a tolerance that allows it: no rebuild, and it works
    with pytest.warns(UserWarning, match="are skipped"):
        dm = setup_dm(root, tmp_path / "cache", max_bad_fraction=0.5)
    assert not dm.cache_entry.built and len(dm.dataset) == 6


def test_a_folder_of_only_broken_files_is_an_error(tmp_path):
    root = tmp_path / "broken"
    write_broken_images(root)
    with pytest.raises(BadImagesError, match="none of the 4 source files could be read"):
        setup_dm(root, tmp_path / "cache", max_bad_fraction=1.0)


# ---------------------------------------------------------------- the dataset
def test_cached_dataset_reads_items_and_batches_alike_and_pickles_without_the_map(tmp_path):
    path = tmp_path / "rows.u8"
    data = np.random.default_rng(0).integers(0, 256, (7, 3, 5, 5), dtype=np.uint8)
    data.tofile(path)
    ds = CachedImageDataset(path, data.shape, labels=torch.arange(7) * 10)
    assert torch.equal(ds[3]["image"], torch.from_numpy(data[3])) and ds[3]["label"] == 30
    batch = ds.__getitems__([6, 0, 3])
    assert [b["label"] for b in batch] == [60, 0, 30]
    assert all(torch.equal(b["image"], ds[i]["image"]) for b, i in zip(batch, [6, 0, 3], strict=True))
    clone = pickle.loads(pickle.dumps(ds))
    assert clone._images is None and torch.equal(clone[5]["image"], ds[5]["image"])


def test_meta_json_records_what_was_built(photos, tmp_path):
    dm = setup_dm(photos, tmp_path / "cache", crop_size=24)
    meta = json.loads((dm.cache_entry.folder / "meta.json").read_text())
    assert meta["shape"] == [10, 3, 16, 16] and meta["num_sources"] == 10 and meta["bad"] == []
    assert meta["preprocessing"]["crop_size"] == 24 and meta["key"] == dm.cache_entry.key
    cache = DecodedCache(dm.cache_entry.folder, dm.cache_entry.sources, meta["preprocessing"])
    assert cache.load() is not None
