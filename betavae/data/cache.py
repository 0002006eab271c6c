"""The decoded cache: every image decoded, cropped and resized once, stored as uint8 in a memory-mapped file.

One cache folder holds one source folder at one preprocessing::

    <cache_dir>/<root name>-<hash of the root path and the preprocessing>/
        meta.json               written last, atomically: key, shape, file names, digest, counts
        images-<key>.u8         uint8 (N, C, S, S), C order, no header (``np.memmap``-able)
        rows-<key>.npy          int64 (N,): the source file of each row
        sources-<key>.tsv       every source file: path, size, mtime_ns, ``ok`` or why it was skipped
        bad_files-<key>.txt     the skipped files with the reason (only when there are any)

``key`` is a SHA-256 of the sorted source list (relative path, size, modification time), of the
preprocessing parameters and of the Pillow and torchvision versions: added, removed or changed files
(or a new decoder) give a new key, so the cache is stale and rebuilt. A cache is used only when
``meta.json`` names the current key, the image file has exactly the recorded size and its every byte
hashes to the recorded digest (xxHash XXH3-128, several GB/s: a 20,000-image 64×64 RGB cache checks in
well under a second, see ``scripts/benchmark_data.py``); anything else (a build that was interrupted, a
truncated or overwritten file) is reported and rebuilt. Readers keep an open file working while a rebuild
replaces it: new files get new names and ``meta.json`` is swapped atomically.
"""

from __future__ import annotations

import errno
import io
import json
import os
import shutil
import socket
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_info
from torch.utils.data import DataLoader, Dataset

from betavae.data import cache_keys
from betavae.data.bad_files import BadImagesError, try_decode
from betavae.data.cache_keys import (
    CACHE_ENV,
    FORMAT,
    Source,
    cache_key,
    file_digest,
)
from betavae.errors import DataError, UnwritableFolderError
from betavae.processes import process_alive


@dataclass
class CacheEntry:
    """A valid cache: where the images are and which source each row came from."""

    folder: Path
    key: str
    shape: tuple[int, ...]  # (N, C, S, S)
    row_source: np.ndarray  # (N,) int64 index into ``sources``
    sources: list[Source]
    bad: list[tuple[str, str]]  # (relative path, reason)
    built: bool  # True when this call built it, False when it was reused

    @property
    def images_path(self) -> Path:
        return self.folder / f"images-{self.key[:16]}.u8"

    @property
    def bad_list_path(self) -> Path:
        return self.folder / f"bad_files-{self.key[:16]}.txt"


class CachedImageDataset(Dataset):
    """Rows of a cache's image file; items ``{"image": uint8 (C, S, S)}`` (+ ``"label"``, + ``fields``); batch reads.

    The file is memory-mapped read-only; forked DataLoader workers inherit the map (so a rebuild that
    replaces the file later does not disturb this run), a pickled copy maps the file again. Pages live in
    the OS page cache, shared by every process and every run.

    Args:
        path: The cache's image file.
        shape: Its shape (N, C, S, S).
        labels: Per-row integer labels (N,) for ``"label"``, or ``None``.
        fields: More per-row tensors (N, ...) by item key, e.g. ``{"attributes": (N, 40) int64}``.
    """

    def __init__(
        self,
        path: Path,
        shape: Sequence[int],
        labels: torch.Tensor | None = None,
        fields: dict[str, torch.Tensor] | None = None,
    ) -> None:
        self.path = Path(path)
        self.shape = tuple(int(s) for s in shape)
        self.labels = labels
        self.fields = dict(fields or {})
        for key, value in [("labels", labels), *self.fields.items()]:
            if value is not None and len(value) != self.shape[0]:
                raise DataError(f"{len(value)} rows of {key} for {self.shape[0]} images")
        self._images: np.memmap | None = None
        _ = self.images

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_images": None}

    @property
    def images(self) -> np.memmap:
        if self._images is None:
            self._images = np.memmap(self.path, dtype=np.uint8, mode="r", shape=self.shape)
        return self._images

    def __len__(self) -> int:
        return self.shape[0]

    def _item(self, image: torch.Tensor, i: int) -> dict[str, Any]:
        item = {"image": image} if self.labels is None else {"image": image, "label": int(self.labels[i])}
        return item | {key: value[i] for key, value in self.fields.items()}

    def __getitem__(self, i: int) -> dict[str, Any]:
        return self._item(torch.from_numpy(np.array(self.images[i])), i)  # a copy: the map is read-only

    def __getitems__(self, indices: Sequence[int]) -> list[dict[str, Any]]:
        batch = torch.from_numpy(self.images[np.asarray(indices, dtype=np.int64)])  # (B, C, S, S), a copy
        return [self._item(image, i) for image, i in zip(batch, indices, strict=True)]


# --------------------------------------------------------------------------- decoding in parallel
class _DecodeJobs(Dataset):
    def __init__(self, files: Sequence[Path], decode: Callable[[Path], np.ndarray]) -> None:
        self.files = list(files)
        self.decode = decode

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> tuple[int, np.ndarray | None, str | None]:
        return (i, *try_decode(self.decode, self.files[i]))


def _as_list(batch: list[Any]) -> list[Any]:
    return batch


def decode_files(
    files: Sequence[Path], decode: Callable[[Path], np.ndarray], num_workers: int
) -> Iterator[tuple[int, np.ndarray | None, str | None]]:
    """``(index, decode(file), None)`` or ``(index, None, "Error: why")`` for every file, in order.

    Runs in ``num_workers`` DataLoader processes (0: in this one); ``decode`` must be picklable.
    """
    loader = DataLoader(
        _DecodeJobs(files, decode),
        batch_size=16,
        num_workers=num_workers,
        collate_fn=_as_list,
        prefetch_factor=4 if num_workers else None,
    )
    for batch in loader:
        yield from batch


# --------------------------------------------------------------------------- the cache folder
def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{socket.gethostname()}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


class DecodedCache:
    """The cache folder of one source list at one preprocessing (see the module docstring).

    Args:
        folder: The cache folder (``cache_folder(...)``).
        sources: Every source file, sorted (``fingerprint(...)``).
        preprocessing: The parameters that determine the decoded rows; part of the key.
    """

    def __init__(self, folder: Path, sources: Sequence[Source], preprocessing: dict[str, Any]) -> None:
        self.folder = Path(folder)
        self.sources = list(sources)
        self.preprocessing = preprocessing
        self.key = cache_key(self.sources, preprocessing)
        self.reason = ""  # why the last ``load`` found no usable cache

    @property
    def meta_path(self) -> Path:
        return self.folder / "meta.json"

    def load(self) -> CacheEntry | None:
        """The valid cache for the current key, or ``None`` with ``self.reason`` saying why not."""
        if not self.meta_path.is_file():
            self.reason = f"no cache yet in {self.folder}"
            return None
        try:
            meta = json.loads(self.meta_path.read_text())
            if meta.get("format") != FORMAT or meta.get("key") != self.key:
                self.reason = f"stale: {self._describe_change(meta)}"
                return None
            entry = CacheEntry(
                folder=self.folder,
                key=self.key,
                shape=tuple(meta["shape"]),
                row_source=np.load(self.folder / f"rows-{self.key[:16]}.npy"),
                sources=self.sources,
                bad=[tuple(b) for b in meta["bad"]],
                built=False,
            )
            expected = int(np.prod(entry.shape))
            actual = entry.images_path.stat().st_size if entry.images_path.is_file() else None
            if actual != expected:
                self.reason = f"corrupt: {entry.images_path.name} has {actual} bytes, expected {expected}"
                return None
            if len(entry.row_source) != entry.shape[0]:
                self.reason = f"corrupt: {len(entry.row_source)} row sources for {entry.shape[0]} rows"
                return None
            if file_digest(entry.images_path) != meta["digest"]:
                self.reason = f"corrupt: the content of {entry.images_path.name} does not match its digest"
                return None
        except (OSError, ValueError, KeyError, TypeError) as err:
            self.reason = f"unreadable ({type(err).__name__}: {err})"
            return None
        return entry

    def _describe_change(self, meta: dict[str, Any]) -> str:
        if meta.get("format") != FORMAT:
            return f"cache format {meta.get('format')} is not the current {FORMAT}"
        if meta.get("versions") != cache_keys.decoder_versions():
            return f"built with {meta.get('versions')}, now {cache_keys.decoder_versions()}"
        old_path = self.folder / f"sources-{str(meta.get('key', ''))[:16]}.tsv"
        if not old_path.is_file():
            return "the source files changed since it was built"
        old = {}
        for line in old_path.read_text().splitlines()[1:]:
            path, size, mtime, _ = line.split("\t", 3)
            old[path] = (int(size), int(mtime))
        new = {s.path: (s.size, s.mtime_ns) for s in self.sources}
        added = sorted(new.keys() - old.keys())
        removed = sorted(old.keys() - new.keys())
        changed = sorted(p for p in new.keys() & old.keys() if new[p] != old[p])
        parts = [
            f"{len(names)} file(s) {what} (e.g. {', '.join(names[:3])})"
            for names, what in ((added, "added"), (removed, "removed"), (changed, "changed"))
            if names
        ]
        return "; ".join(parts) or "the preprocessing changed"

    def write(
        self, results: Iterable[tuple[int, np.ndarray | None, str | None]], max_rows: int, row_shape: Sequence[int]
    ) -> CacheEntry:
        """Store the rows of ``results`` (source index, rows (k, C, S, S) or ``None``, error or ``None``).

        Rows are written in the order given, at most ``max_rows``; ``meta.json`` comes last.
        """
        tag = self.key[:16]
        row_shape = tuple(int(s) for s in row_shape)
        row_bytes = int(np.prod(row_shape))
        tmp = self.folder / f".images-{tag}.{socket.gethostname()}.{os.getpid()}.tmp"
        status = ["ok"] * len(self.sources)
        row_source: list[int] = []
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            self._remove_abandoned_temporaries()
            self._check_free_space(max_rows * row_bytes)
            # plain sequential writes, not a memory map: a full disk is an OSError (ENOSPC) here, never a SIGBUS
            with tmp.open("wb") as f:
                for index, rows, error in results:
                    if error is not None:
                        status[index] = " ".join(error.split())  # one line per file
                        continue
                    rows = np.ascontiguousarray(rows, dtype=np.uint8)
                    if rows.shape[1:] != row_shape or len(row_source) + len(rows) > max(max_rows, 1):
                        raise DataError(f"rows of shape {rows.shape} for a cache of {max_rows} rows of {row_shape}")
                    f.write(rows.tobytes())
                    row_source.extend([index] * len(rows))
                f.flush()
                os.fsync(f.fileno())
            n = len(row_source)
            if n == 0:
                raise BadImagesError(self._no_rows_message(status))
            shape = (n, *row_shape)
            digest = file_digest(tmp)
            bad = [(s.path, st) for s, st in zip(self.sources, status, strict=True) if st != "ok"]
            buffer = io.BytesIO()
            np.save(buffer, np.asarray(row_source, dtype=np.int64))
            _write_atomic(self.folder / f"rows-{tag}.npy", buffer.getvalue())
            lines = ["path\tsize\tmtime_ns\tstatus"] + [
                f"{s.path}\t{s.size}\t{s.mtime_ns}\t{st}" for s, st in zip(self.sources, status, strict=True)
            ]
            _write_atomic(self.folder / f"sources-{tag}.tsv", ("\n".join(lines) + "\n").encode())
            if bad:
                text = "".join(f"{path}\t{reason}\n" for path, reason in bad)
                _write_atomic(self.folder / f"bad_files-{tag}.txt", text.encode())
            os.replace(tmp, self.folder / f"images-{tag}.u8")
        except OSError as err:
            raise self._write_error(err, max_rows * row_bytes) from None
        finally:
            tmp.unlink(missing_ok=True)
            if hasattr(results, "close"):  # stop the decode workers now, whatever happened
                results.close()
        meta = {
            "format": FORMAT,
            "key": self.key,
            "shape": list(shape),
            "digest": digest,
            "num_sources": len(self.sources),
            "versions": cache_keys.decoder_versions(),
            "bad": bad,
            "preprocessing": self.preprocessing,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        try:
            _write_atomic(self.meta_path, json.dumps(meta, indent=1).encode())
        except OSError as err:
            raise self._write_error(err, 0) from None
        self._remove_other_keys(tag)
        return CacheEntry(self.folder, self.key, shape, np.asarray(row_source, np.int64), self.sources, bad, True)

    def _check_free_space(self, needed: int) -> None:
        """Stop before decoding anything when the cache's folder has less room than the cache needs."""
        free = shutil.disk_usage(self.folder).free
        if free < needed + (1 << 20):  # + 1 MB for the row list, source list and meta.json
            raise OSError(errno.ENOSPC, f"{free / 2**20:.1f} MB free")

    def _write_error(self, err: OSError, needed: int) -> UnwritableFolderError:
        """One message for a cache that cannot be written: where, why, and for a full disk the size needed."""
        where = f"--data.init_args.cache_dir (or ${CACHE_ENV}) to a folder with room"
        if err.errno in (errno.ENOSPC, errno.EDQUOT):
            try:
                free = f"{shutil.disk_usage(self.folder).free / 2**20:.1f} MB free"
            except OSError:
                free = "free space unknown"
            return UnwritableFolderError(
                f"no space left for the decoded cache in {self.folder}: it needs {needed / 2**20:.1f} MB "
                f"({len(self.sources)} source files), {free}. Free space there, or set {where}. Nothing was kept "
                "(the partial file is removed)."
            )
        return UnwritableFolderError(
            f"cannot write the decoded cache in {self.folder}: {err.strerror or err}. Set {where}."
        )

    def _no_rows_message(self, status: list[str]) -> str:
        examples = [f"{s.path} ({st})" for s, st in zip(self.sources, status, strict=True) if st != "ok"][:3]
        return f"none of the {len(self.sources)} source files could be read, e.g. {'; '.join(examples)}"

    def _remove_abandoned_temporaries(self) -> None:
        """Temporary files of builds on this host whose process is gone (killed mid-build)."""
        host = socket.gethostname()
        for path in self.folder.glob(f".*.{host}.*.tmp"):
            pid = path.name.rsplit(".", 2)[-2]
            if pid.isdigit() and not process_alive(int(pid)):
                path.unlink(missing_ok=True)

    def _remove_other_keys(self, tag: str) -> None:
        for path in self.folder.iterdir():
            stem = path.name.split(".")[0]
            if "-" in stem and stem.rsplit("-", 1)[1] != tag and not path.name.startswith("."):
                path.unlink(missing_ok=True)


def load_or_build(
    cache: DecodedCache,
    build: Callable[[], tuple[Iterable[tuple[int, np.ndarray | None, str | None]], int, Sequence[int]]],
) -> CacheEntry:
    """The valid cache, else a new one from ``build()`` → (results, max_rows, row_shape); logs which."""
    entry = cache.load()
    if entry is not None:
        return entry
    rank_zero_info(f"Decoded cache {cache.folder}: {cache.reason}; building it from {len(cache.sources)} files.")
    start = time.perf_counter()
    results, max_rows, row_shape = build()
    entry = cache.write(results, max_rows, row_shape)
    seconds = time.perf_counter() - start
    rank_zero_info(
        f"Decoded cache built: {entry.shape[0]} images {tuple(entry.shape[1:])} in {seconds:.1f} s "
        f"({len(cache.sources) / max(seconds, 1e-9):.0f} files/s), {len(entry.bad)} skipped."
    )
    return entry
