"""The one file-sha256 helper: model weights, provenance inputs, atlas files and duplicate checks
all identify a file by the sha256 of its bytes as stored.

The atlas is the exception: its files are identified by the sha256 of their *uncompressed* bytes
(``stream_sha256`` over a decompressing reader, see ``atlas.content_sha256``), so a release keeps
its identity whether it is stored as ``.nii`` or ``.nii.gz``.
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import BinaryIO

CHUNK = 1 << 20


def stream_sha256(stream: BinaryIO, chunk: int = CHUNK) -> str:
    """Hex sha256 of everything ``stream`` yields, read in chunks (a file, a zip member, a gzip reader)."""
    h = hashlib.sha256()
    for block in iter(lambda: stream.read(chunk), b""):
        h.update(block)
    return h.hexdigest()


def sha256_file(path: str | Path, chunk: int = CHUNK) -> str:
    """Hex sha256 of a file's bytes as stored, read in chunks."""
    with open(path, "rb") as fh:
        return stream_sha256(fh, chunk)
