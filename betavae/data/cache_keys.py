"""What identifies and verifies a decoded cache: its folder, its key and the digest of its image file.

The key (``cache_key``) is a SHA-256 of the cache format, the decoder versions, the preprocessing and the
source list (relative path, size, modification time): any change gives a new key. The digest
(``file_digest``) is XXH3-128 of every byte of the image file. See ``betavae.data.cache`` for the layout.
"""

from __future__ import annotations

import hashlib
import json
import mmap
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import PIL
import torchvision
import xxhash

from betavae.errors import UnwritableFolderError
from betavae.versions import file_in_the_way

CACHE_ENV = "BETAVAE_CACHE_DIR"
FORMAT = 2  # 2: the digest covers every byte of the image file (1 hashed 64 rows)
DIGEST_CHUNK = 64 << 20  # bytes hashed at a time


def default_cache_dir() -> Path:
    """``$BETAVAE_CACHE_DIR``, else ``$XDG_CACHE_HOME/betavae``, else ``~/.cache/betavae``."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser() / "betavae"


def writable_cache_dir(cache_dir: Path | None) -> Path:
    """``cache_dir`` (``None``: ``default_cache_dir()``), created if needed.

    Raises:
        UnwritableFolderError: it cannot be created (a file in its place, no permission); the message names
            the path and which settings choose another folder.
    """
    cache_dir = cache_dir or default_cache_dir()
    blocking = file_in_the_way(cache_dir)
    why = f"{blocking} is a file, not a folder" if blocking else None
    try:
        if why is None:
            cache_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        why = f"{type(err).__name__}: {err.strerror or err}"
    if why is not None:
        raise UnwritableFolderError(
            f"cannot create the decoded-cache folder {cache_dir} ({why}); set --data.init_args.cache_dir (or "
            "$BETAVAE_CACHE_DIR) to a writable folder"
        )
    return cache_dir


@dataclass(frozen=True)
class Source:
    """One source file as the key sees it: path relative to the root, size in bytes, mtime in ns."""

    path: str
    size: int
    mtime_ns: int


def fingerprint(files: Sequence[Path], root: Path) -> list[Source]:
    """The ``Source`` of every file, in the given (sorted) order."""
    sources = []
    for file in files:
        stat = file.stat()
        sources.append(Source(file.relative_to(root).as_posix(), stat.st_size, stat.st_mtime_ns))
    return sources


def decoder_versions() -> dict[str, str]:
    """The libraries whose output the cache stores: a new version may decode or resize differently."""
    return {"pillow": PIL.__version__, "torchvision": torchvision.__version__}


def cache_key(sources: Sequence[Source], preprocessing: dict[str, Any]) -> str:
    """SHA-256 hex digest of the cache format, the decoder versions, the preprocessing and the source list."""
    ident = {"format": FORMAT, "versions": decoder_versions(), "preprocessing": preprocessing}
    h = hashlib.sha256(json.dumps(ident, sort_keys=True).encode())
    for s in sources:
        h.update(f"{s.path}\t{s.size}\t{s.mtime_ns}\n".encode())
    return h.hexdigest()


def cache_folder(cache_dir: Path, root: Path, preprocessing: dict[str, Any]) -> Path:
    """The folder of ``root`` at ``preprocessing``: one per source folder and parameter set."""
    ident = json.dumps({"root": str(root.resolve()), "preprocessing": preprocessing}, sort_keys=True)
    return cache_dir / f"{root.resolve().name or 'root'}-{hashlib.sha256(ident.encode()).hexdigest()[:16]}"


def file_digest(path: str | Path) -> str:
    """XXH3-128 of every byte of the file at ``path`` (read in ``DIGEST_CHUNK`` pieces), as hex.

    A fast non-cryptographic hash: it guards against damaged or overwritten files, not against tampering.
    """
    h = xxhash.xxh3_128()
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size:
            with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
                view = memoryview(mapped)
                try:
                    for start in range(0, size, DIGEST_CHUNK):
                        h.update(view[start : start + DIGEST_CHUNK])
                finally:
                    view.release()
    return h.hexdigest()
