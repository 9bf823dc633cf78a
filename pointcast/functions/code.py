"""Function code: the uploaded zip (checked, hashed) and its unpacked copy on disk, one directory per revision."""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import os
import shutil
import tempfile
import zipfile
from pathlib import Path

from pointcast.functions.errors import InvalidParameterValue, RequestTooLarge

MAX_ZIP_BYTES = 50 * 1024 * 1024  # AWS Lambda's limit for a zip uploaded with the request
MAX_UNZIPPED_BYTES = 250 * 1024 * 1024
_UNZIP_ERROR = "Could not unzip uploaded file. Please check your file, then try to upload again."


def decode_zip(encoded: str) -> bytes:
    """The ZipFile member (base64 on the wire) as bytes, checked to be a zip within Lambda's limits."""
    try:
        data = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidParameterValue("Code.ZipFile is not valid base64") from None
    if len(data) > MAX_ZIP_BYTES:
        raise RequestTooLarge(f"Code.ZipFile is {len(data)} bytes; at most {MAX_ZIP_BYTES} are accepted")
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            size = sum(info.file_size for info in archive.infolist())
            if size > MAX_UNZIPPED_BYTES:  # before inflating anything: a 2 MB zip may hold gigabytes of zeros
                raise InvalidParameterValue(
                    f"Unzipped size must be smaller than {MAX_UNZIPPED_BYTES} bytes (is {size})"
                )
            bad = archive.testzip()  # inflates each member up to its declared size, checking its CRC
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError):
        raise InvalidParameterValue(_UNZIP_ERROR) from None
    if bad is not None:
        raise InvalidParameterValue(f"{_UNZIP_ERROR} ({bad} is corrupt)")
    return data


def sha256_b64(data: bytes) -> str:
    """``CodeSha256`` as Lambda reports it: the base64 of the SHA-256 digest."""
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


def unpack(root: Path, name: str, data: bytes) -> Path:
    """The directory holding ``data`` unpacked (made once per distinct zip; safe against concurrent callers)."""
    digest = hashlib.sha256(data).hexdigest()[:32]
    target = root / name / digest
    if target.is_dir():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{digest}-", dir=target.parent))
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            archive.extractall(staging)  # drops absolute paths and ".." parts
            for info in archive.infolist():
                mode = info.external_attr >> 16
                if mode & 0o111 and not info.is_dir():
                    path = staging / info.filename
                    path.chmod(path.stat().st_mode | 0o111)
        os.rename(staging, target)
    except OSError:
        shutil.rmtree(staging, ignore_errors=True)
        if not target.is_dir():
            raise
    return target


def zip_files(files: dict[str, str]) -> bytes:
    """A deployment package in memory: ``{"index.py": source, ...}`` as a zip (what ``Code.ZipFile`` takes)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, text in files.items():
            archive.writestr(name, text)
    return buffer.getvalue()
