"""Function code: the uploaded zip (checked, hashed) and its unpacked copy on disk, one directory per revision.

The unpacked copy is read-only (files 0o444, or 0o555 where the zip gives any execute bit; directories 0o555), as
Lambda's ``/var/task`` is, so that a handler cannot remove or change its own code by accident (``/tmp`` stays
writable). A process running as root is not held back by permission bits, so a directory that already exists is
checked against the zip before it is reused, and unpacked again if anything in it differs.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import io
import os
import secrets
import shutil
import stat
import tempfile
import threading
import zipfile
import zlib
from collections.abc import Mapping
from pathlib import Path, PurePosixPath

from pointcast.functions.errors import InvalidParameterValue, RequestTooLarge

MAX_ZIP_BYTES = 50 * 1024 * 1024  # AWS Lambda's limit for a zip uploaded with the request
MAX_UNZIPPED_BYTES = 250 * 1024 * 1024
_UNZIP_ERROR = "Could not unzip uploaded file. Please check your file, then try to upload again."
MAX_NAME_BYTES = 255  # a file or directory name (NAME_MAX)
MAX_LINK_BYTES = 4095  # a symbolic link's target (PATH_MAX less its NUL)
MAX_PATH_BYTES = 3072  # a path inside the package: PATH_MAX (4,096) less room for DATA_DIR/functions/NAME/<hash>
STAGING_KEPT = 3600.0  # seconds a staging directory of ``unpack`` is left before ``sweep`` takes it for a crash's
FILE_MODE = 0o444
EXEC_MODE = 0o555
DIR_MODE = 0o555
_CHUNK = 1024 * 1024
_locks: dict[Path, threading.Lock] = {}
_locks_guard = threading.Lock()


def decode_zip(encoded: str) -> bytes:
    """The ZipFile member (base64 on the wire) as bytes, checked to be a zip within Lambda's limits whose entries
    all lie inside the package (no absolute path, no ``..``)."""
    try:
        data = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidParameterValue("Code.ZipFile is not valid base64") from None
    if len(data) > MAX_ZIP_BYTES:
        raise RequestTooLarge(f"Code.ZipFile is {len(data)} bytes; at most {MAX_ZIP_BYTES} are accepted")
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            infos = archive.infolist()
            outside = next((info.filename for info in infos if not _inside(info.filename)), None)
            if outside is not None:
                raise InvalidParameterValue(
                    f"{_UNZIP_ERROR} (the entry '{outside[:200]}' lies outside the package: "
                    "an absolute path or a '..' part)"
                )
            files, dirs = _layout(archive)
            too_long = next((str(path) for path in [*files, *dirs] if not _storable(path)), None)
            if too_long is not None:
                raise InvalidParameterValue(
                    f"{_UNZIP_ERROR} (the entry '{too_long[:200]}…' has a name longer than {MAX_NAME_BYTES} bytes or "
                    f"a path longer than {MAX_PATH_BYTES}, which no file system keeps)"
                )
            both = next((str(path) for path in files if path in dirs), None)
            if both is not None:
                raise InvalidParameterValue(f"{_UNZIP_ERROR} ('{both[:200]}' is both a file and a directory)")
            for path, info in files.items():
                # A link's target is its content: at most PATH_MAX - 1 bytes, checked by its declared size before
                # anything is inflated (reading an entry stops at its declared size)
                if _is_link(info) and (info.file_size > MAX_LINK_BYTES or not _link_inside(path, archive.read(info))):
                    raise InvalidParameterValue(
                        f"{_UNZIP_ERROR} (the symbolic link '{str(path)[:200]}' points outside the package, "
                        f"or nowhere, or its target is longer than {MAX_LINK_BYTES} bytes)"
                    )
            size = sum(info.file_size for info in infos)
            if size > MAX_UNZIPPED_BYTES:  # before inflating anything: a 2 MB zip may hold gigabytes of zeros
                raise InvalidParameterValue(
                    f"Unzipped size must be smaller than {MAX_UNZIPPED_BYTES} bytes (is {size})"
                )
            bad = archive.testzip()  # inflates each member up to its declared size, checking its CRC
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError):
        raise InvalidParameterValue(_UNZIP_ERROR) from None
    except (RuntimeError, NotImplementedError) as exc:  # an encrypted entry, an unsupported compression method
        raise InvalidParameterValue(f"{_UNZIP_ERROR} ({exc})") from None
    if bad is not None:
        raise InvalidParameterValue(f"{_UNZIP_ERROR} ({bad} is corrupt)")
    return data


def _storable(path: PurePosixPath) -> bool:
    """Whether an entry's path can be created under the code directory (Linux: 255 bytes a name, 4,096 a path, of
    which the code directory's own path takes some)."""
    return len(str(path).encode()) <= MAX_PATH_BYTES and all(
        len(part.encode()) <= MAX_NAME_BYTES for part in path.parts
    )


def _inside(filename: str) -> bool:
    """Whether a zip entry's name stays inside the directory it is unpacked into, as written."""
    return not filename.startswith(("/", "\\")) and ".." not in filename.replace("\\", "/").split("/")


def _member_path(filename: str) -> PurePosixPath | None:
    """Where an entry is unpacked, relative to the code directory, named the way ``ZipFile.extract`` names it
    (empty, ``.`` and ``..`` parts dropped); None for an entry that names no path (``/``, ``..``). Zips stored
    before uploads were checked by ``_inside`` may still hold such entries: they are unpacked inside, never out."""
    parts = [part for part in filename.split("/") if part not in ("", ".", "..")]
    return PurePosixPath(*parts) if parts else None


def _layout(archive: zipfile.ZipFile) -> tuple[dict[PurePosixPath, zipfile.ZipInfo], set[PurePosixPath]]:
    """The files (path -> the entry that is unpacked there; a later duplicate wins, as in extractall) and the
    directories (explicit entries and every file's parents) of the unpacked zip."""
    files: dict[PurePosixPath, zipfile.ZipInfo] = {}
    dirs: set[PurePosixPath] = set()
    for info in archive.infolist():
        path = _member_path(info.filename)
        if path is None:
            continue
        if info.is_dir():
            dirs.add(path)
        else:
            files[path] = info
            dirs.update(p for p in path.parents if p != PurePosixPath("."))
    return files, dirs


def _is_link(info: zipfile.ZipInfo) -> bool:
    """A symbolic link (``zip --symlinks``, npm's and pip's packagers): its content is the target."""
    return stat.S_ISLNK(info.external_attr >> 16)


def _link_inside(path: PurePosixPath, target: bytes) -> bool:
    """Whether a link at ``path`` to ``target`` stays inside the package: a relative target whose ``..`` parts all
    lead it (``../lib/libx.so.1``) and climb no higher than the package. (A ``..`` after a name is refused: the
    name may itself be a link, to the package's top, and climb out from there.)"""
    text = target.decode("utf-8", "replace")
    if not text or text.startswith("/") or "\x00" in text:
        return False
    parts = [part for part in text.split("/") if part not in ("", ".")]
    climbs = next((i for i, part in enumerate(parts) if part != ".."), len(parts))
    return ".." not in parts[climbs:] and climbs <= len(path.parts) - 1


def _file_mode(info: zipfile.ZipInfo) -> int:
    return EXEC_MODE if (info.external_attr >> 16) & 0o111 else FILE_MODE


def sha256_b64(data: bytes) -> str:
    """``CodeSha256`` as Lambda reports it: the base64 of the SHA-256 digest."""
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


def unpack(root: Path, name: str, data: bytes) -> Path:
    """The directory holding ``data`` unpacked, read-only (made once per distinct zip; safe against concurrent
    callers). An existing directory is reused only if it is intact (``_intact``): a handler running as root may
    have changed it, and the next caller (a new revision, the function created again, a restart) gets the zip's
    files back."""
    digest = hashlib.sha256(data).hexdigest()[:32]
    target = root / name / digest
    with _lock(target), zipfile.ZipFile(io.BytesIO(data)) as archive:
        files, dirs = _layout(archive)
        if target.is_dir() and _intact(target, files, dirs):
            os.utime(target)  # in use again: a sweep that began before this keeps it (``sweep``)
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{digest}-", dir=target.parent))
        try:
            _extract(archive, files, dirs, staging)
            if target.is_dir():  # not intact: out of the way (a rename within the same directory), then removed
                trash = target.parent / f".{digest}-old-{secrets.token_hex(4)}"
                os.rename(target, trash)
                remove_tree(trash)
            os.rename(staging, target)
        except OSError:
            remove_tree(staging)
            if not target.is_dir():
                raise
    return target


def digest_dir(code_sha256: str) -> str:
    """The name ``unpack`` gives the directory of the zip whose ``CodeSha256`` (base64 SHA-256) this is."""
    return base64.b64decode(code_sha256).hex()[:32]


def sweep(root: Path, current: Mapping[str, str], in_use: set[Path], since: float, pycache: Path) -> list[Path]:
    """Remove unpacked code that no function has any more and no worker runs: each ``root/NAME/<digest>`` that is
    not ``current[NAME]`` (``digest_dir``; a deleted function has none), not in ``in_use``, and not unpacked or
    reused since ``since`` (a time.time() taken before ``current`` was read: a read that unpacked it meanwhile,
    for a revision written meanwhile, keeps it), with its bytecode under ``pycache``; then directories left empty
    and staging left over by a crash. Returns the code directories removed."""
    removed: list[Path] = []
    try:
        names = [entry for entry in os.scandir(root) if entry.is_dir(follow_symlinks=False)]
    except OSError:
        return removed
    for name in names:
        try:
            entries = [entry for entry in os.scandir(name.path) if entry.is_dir(follow_symlinks=False)]
        except OSError:
            continue
        for entry in entries:
            target = Path(entry.path)
            if entry.name == current.get(name.name) or target in in_use:
                continue
            staging = entry.name.startswith(".")  # unpack's staging or trash: only a crash leaves it for long
            with _lock(target), contextlib.suppress(OSError):
                if target.lstat().st_mtime < since - (STAGING_KEPT if staging else 0):
                    remove_tree(target)
                    remove_tree(pycache / target.relative_to(target.anchor))
                    if not staging and not target.exists():
                        removed.append(target)
            with _locks_guard:
                if not target.exists():
                    _locks.pop(target, None)
        with contextlib.suppress(OSError):
            os.rmdir(name.path)  # only if nothing is left in it
    return removed


def _lock(target: Path) -> threading.Lock:
    with _locks_guard:
        return _locks.setdefault(target, threading.Lock())


def _extract(
    archive: zipfile.ZipFile, files: dict[PurePosixPath, zipfile.ZipInfo], dirs: set[PurePosixPath], staging: Path
) -> None:
    """Every entry under ``staging`` (at ``_member_path``, never outside it), then everything made read-only."""
    for path in sorted(dirs):
        (staging / path).mkdir(parents=True, exist_ok=True)
    for path, info in files.items():
        dest = staging / path
        if _is_link(info):
            os.symlink(archive.read(info).decode("utf-8", "replace"), dest)  # (a link's own mode is not used)
            continue
        with archive.open(info) as source, open(dest, "wb") as sink:
            shutil.copyfileobj(source, sink, _CHUNK)
        dest.chmod(_file_mode(info))
    for path in sorted(dirs, key=lambda p: len(p.parts), reverse=True):  # children before their parents
        (staging / path).chmod(DIR_MODE)
    staging.chmod(DIR_MODE)


def _intact(target: Path, files: dict[PurePosixPath, zipfile.ZipInfo], dirs: set[PurePosixPath]) -> bool:
    """Whether ``target`` holds exactly the zip's files and directories, with their contents (CRC-32) and the
    read-only modes ``_extract`` gave them, and nothing else."""
    seen_files: set[PurePosixPath] = set()
    seen_dirs: set[PurePosixPath] = set()
    try:
        if stat.S_IMODE(target.lstat().st_mode) != DIR_MODE:
            return False
        for top, dirnames, filenames in os.walk(target):
            here = PurePosixPath(Path(top).relative_to(target))
            for entry in dirnames:
                path = here / entry
                st = (target / path).lstat()
                if stat.S_ISLNK(st.st_mode):  # a link to a directory: os.walk lists it here, and does not enter it
                    if not _same_link(target / path, files.get(path)):
                        return False
                    seen_files.add(path)
                    continue
                if not stat.S_ISDIR(st.st_mode) or stat.S_IMODE(st.st_mode) != DIR_MODE or path not in dirs:
                    return False
                seen_dirs.add(path)
            for entry in filenames:
                path = here / entry
                info = files.get(path)
                st = (target / path).lstat()
                if stat.S_ISLNK(st.st_mode) or (info is not None and _is_link(info)):
                    if not _same_link(target / path, info):
                        return False
                    seen_files.add(path)
                    continue
                if (
                    info is None
                    or not stat.S_ISREG(st.st_mode)
                    or stat.S_IMODE(st.st_mode) != _file_mode(info)
                    or st.st_size != info.file_size
                    or _crc32(target / path) != info.CRC
                ):
                    return False
                seen_files.add(path)
    except OSError:
        return False
    return seen_files == files.keys() and seen_dirs == dirs


def _same_link(path: Path, info: zipfile.ZipInfo | None) -> bool:
    """Whether ``path`` is the symbolic link the entry ``info`` describes (its target is the entry's content)."""
    if info is None or not _is_link(info) or not path.is_symlink():
        return False
    target = os.readlink(path).encode()
    return len(target) == info.file_size and zlib.crc32(target) == info.CRC


def _crc32(path: Path) -> int:
    crc = 0
    with open(path, "rb") as source:
        while chunk := source.read(_CHUNK):
            crc = zlib.crc32(chunk, crc)
    return crc


def remove_tree(path: Path) -> None:
    """Remove ``path`` and everything in it, read-only directories included (``shutil.rmtree`` alone cannot unlink
    an entry of a directory without write permission); what cannot be removed is left."""
    with contextlib.suppress(OSError):
        if not path.is_symlink():
            path.chmod(0o700)
    for top, dirnames, _ in os.walk(path):
        for entry in dirnames:
            child = Path(top) / entry
            with contextlib.suppress(OSError):
                if not child.is_symlink():
                    child.chmod(0o700)
    shutil.rmtree(path, ignore_errors=True)


def zip_files(files: dict[str, str]) -> bytes:
    """A deployment package in memory: ``{"index.py": source, ...}`` as a zip (what ``Code.ZipFile`` takes)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, text in files.items():
            archive.writestr(name, text)
    return buffer.getvalue()
