"""Turn what a person uploads (images, zips of images) into (name, bytes) pairs, safely.

Nothing is extracted to disk: zip members are read into memory, and names that try to climb out
of the archive (`../`, absolute paths), too many files, too many bytes (zip bombs) and damaged
archives are refused with a message for the user instead of an exception.
"""
from __future__ import annotations

import io
import posixpath
import re
import struct
import zipfile
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Iterable

from .data.preprocess import MAX_BYTES
from .data.readers import IMAGE_SUFFIXES

MAX_FILES = 500                      # images per upload (all zips together)
MAX_TOTAL_BYTES = 300 * 1024 * 1024  # uncompressed, all files together
MAX_RATIO = 200                      # uncompressed / compressed size of one member: more is a bomb
MAX_ENTRIES = 10 * MAX_FILES         # zip entries looked at (folders and clutter included)
MAX_DIRECTORY_BYTES = 4 * 1024 * 1024  # a zip's central directory: ~800 bytes per allowed entry


def safe_name(name: str, limit: int = 120) -> str:
    """A file name fit to show (in a message, an id): no markup, no control characters, bounded."""
    out = re.sub(r"[^\w .,()+/-]+", "_", name).strip() or "file"
    return out if len(out) <= limit else out[:limit - 1] + "…"


@dataclass
class UploadBatch:
    """Images ready to index, and one line per file that was skipped, saying why."""
    images: list[tuple[str, bytes]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    total_bytes: int = 0

    def _add(self, name: str, data: bytes) -> bool:
        if len(self.images) >= MAX_FILES:
            self.problems.append(f"{name}: skipped, at most {MAX_FILES} images per upload")
            return False
        if self.total_bytes + len(data) > MAX_TOTAL_BYTES:
            self.problems.append(f"{name}: skipped, the upload is over {MAX_TOTAL_BYTES // 2**20} MB in all")
            return False
        self.images.append((name, data))
        self.total_bytes += len(data)
        return True


def is_zip(name: str, data: bytes) -> bool:
    return name.lower().endswith(".zip") or data[:4] == b"PK\x03\x04"


def unsafe_member_name(name: str) -> str | None:
    """Why a zip member name is refused (path traversal, absolute path), or None when it is fine.
    `./x/../fine.png` stays inside the archive and is fine."""
    if "\x00" in name:
        return "a name with a NUL byte"
    norm = name.replace("\\", "/")
    if norm.startswith("/") or (len(norm) > 1 and norm[1] == ":"):
        return "an absolute path"
    resolved = posixpath.normpath(norm)
    if resolved == ".." or resolved.startswith("../"):
        return "a path that leaves the archive (../)"
    return None


def zip_directory_size(data: bytes) -> tuple[int, int]:
    """(entries, bytes) of a zip's central directory, read from its end records alone, so a
    hostile archive is refused before `zipfile` parses millions of entries. ValueError when the
    end record is missing."""
    start = max(0, len(data) - (22 + 65535))                   # the record + the longest comment
    pos = data.rfind(b"PK\x05\x06", start)
    if pos < 0 or pos + 22 > len(data):
        raise ValueError("no end-of-central-directory record")
    entries, size = struct.unpack("<HI", data[pos + 10:pos + 16])
    loc = pos - 20                                             # ZIP64: the locator sits just before
    if (entries == 0xFFFF or size == 0xFFFFFFFF) and loc >= 0 and data[loc:loc + 4] == b"PK\x06\x07":
        rec = data.rfind(b"PK\x06\x06", 0, loc)
        if rec >= 0 and rec + 56 <= loc:
            entries, size = struct.unpack("<QQ", data[rec + 32:rec + 48])
    return entries, size


def read_zip(name: str, data: bytes, batch: UploadBatch) -> None:
    """Add a zip's images to `batch`; everything refused goes to `batch.problems`."""
    name = safe_name(name)
    try:
        entries, cd_bytes = zip_directory_size(data)
    except ValueError as e:
        batch.problems.append(f"{name}: not a readable zip archive ({e})")
        return
    if entries > MAX_ENTRIES or cd_bytes > MAX_DIRECTORY_BYTES:
        batch.problems.append(f"{name}: refused, it holds {entries} entries ({cd_bytes // 1024} KB of directory; "
                              f"at most {MAX_FILES} images are used)")
        return
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
        members = zf.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError) as e:
        batch.problems.append(f"{name}: not a readable zip archive ({e})")
        return
    images = [m for m in members if not m.is_dir()]
    if len(images) > MAX_ENTRIES:
        batch.problems.append(f"{name}: refused, it holds {len(images)} files (at most {MAX_FILES} images are used)")
        return
    with zf:
        for m in images:
            label = safe_name(f"{name}/{m.filename}")
            why = unsafe_member_name(m.filename)
            if why:
                batch.problems.append(f"{label}: refused, {why}")
                continue
            keep_name = posixpath.normpath(m.filename.replace("\\", "/"))
            base = PurePosixPath(keep_name).name
            if base.startswith(".") or "__MACOSX" in m.filename:
                continue                                   # OS clutter, not a photo
            if PurePosixPath(base).suffix.lower() not in IMAGE_SUFFIXES:
                batch.problems.append(f"{label}: skipped, not an image file name")
                continue
            if m.file_size > MAX_BYTES or (m.compress_size and m.file_size / m.compress_size > MAX_RATIO
                                           and m.file_size > 1 << 20):
                batch.problems.append(f"{label}: refused, too large when unpacked ({m.file_size // 2**20} MB)")
                continue
            try:
                with zf.open(m) as f:
                    blob = f.read(MAX_BYTES + 1)           # never trust the declared size alone
            except (zipfile.BadZipFile, OSError, ValueError, NotImplementedError, RuntimeError) as e:
                batch.problems.append(f"{label}: damaged or encrypted ({e})")
                continue
            if len(blob) > MAX_BYTES:
                batch.problems.append(f"{label}: refused, too large when unpacked")
                continue
            if not batch._add(keep_name, blob):
                break


def collect_images(files: Iterable[tuple[str, bytes]]) -> UploadBatch:
    """Uploaded files (plain images and zips, mixed) -> an UploadBatch. Images are not decoded
    here; `Gallery.from_images` does that and reports the ones Pillow cannot read."""
    batch = UploadBatch()
    for name, data in files:
        name, data = safe_name(str(name)), bytes(data)
        if not data:
            batch.problems.append(f"{name}: the file is empty")
        elif is_zip(name, data):
            read_zip(name, data, batch)
        elif len(data) > MAX_BYTES:
            batch.problems.append(f"{name}: refused, larger than {MAX_BYTES // 2**20} MB")
        elif not batch._add(name, data):
            continue
    return batch
