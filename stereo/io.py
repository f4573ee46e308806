"""Atomic file writes: every output of the project appears whole or not at all.

A writer gets a temporary path in the destination's folder that keeps the destination's suffix (so
OpenCV picks the right encoder), named ``.<stem>.tmp-<pid>-<random><suffix>``; on success the file is
renamed over the destination (atomic on POSIX), on failure it is removed. A process killed with
``kill -9`` mid-write leaves only such a temporary file next to an intact old destination;
:func:`remove_stale_temps` clears them at the next start.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import re
import secrets
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from stereo.errors import OutputError

TMP_MARK = ".tmp-"
log = logging.getLogger(__name__)


PACKAGE_DIR = Path(__file__).resolve().parent


def refuse_package_path(path: str | os.PathLike, key: str) -> Path:
    """``path`` (returned as given) when it lies outside the installed package; an :class:`OutputError`
    naming ``key`` otherwise: tools never overwrite the package's own files (its shipped weights, configs),
    which every later run would then use as if nothing had changed."""
    where = Path(path).expanduser().resolve()
    if where == PACKAGE_DIR or PACKAGE_DIR in where.parents:
        raise OutputError(
            f"{key}={path}: inside the installed package ({PACKAGE_DIR}), whose files are never overwritten; "
            f"write it elsewhere (and copy a file that is to ship into the package yourself)"
        )
    return Path(path)


def temp_path(path: str | os.PathLike) -> Path:
    """A fresh temporary sibling of ``path`` with the same suffix."""
    path = Path(path)
    return path.with_name(f".{path.stem}{TMP_MARK}{os.getpid()}-{secrets.token_hex(3)}{path.suffix}")


@contextlib.contextmanager
def atomic_paths(paths: Sequence[str | os.PathLike], fsync: bool = False) -> Iterator[list[Path]]:
    """Yield temporary paths for ``paths``; when the block succeeds, rename them all into place.

    Either every destination is replaced, or (on any exception in the block or while renaming) every
    temporary file is removed and the destinations keep their old content. ``OSError`` is re-raised
    as :class:`~stereo.errors.OutputError` naming the destination.
    """
    dests = [Path(p) for p in paths]
    temps = [temp_path(p) for p in dests]
    current = dests[0] if dests else None
    try:
        for d in dests:
            d.parent.mkdir(parents=True, exist_ok=True)
        yield temps
        for t, d in zip(temps, dests, strict=True):
            current = d
            if not t.is_file():
                raise OutputError(f"{d}: the writer produced no file")
            if fsync:
                with open(t, "rb") as f:
                    os.fsync(f.fileno())
        for t, d in zip(temps, dests, strict=True):
            current = d
            os.replace(t, d)
    except OSError as e:
        if isinstance(e, OutputError):
            raise
        raise OutputError(f"cannot write {current}: {e.strerror or e}") from e
    finally:
        for t in temps:
            with contextlib.suppress(OSError):
                t.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, fsync: bool = False) -> Iterator[Path]:
    """Yield one temporary path for ``path``; renamed into place when the block succeeds."""
    with atomic_paths([path], fsync=fsync) as (tmp,):
        yield tmp


def write_bytes(path: str | os.PathLike, data: bytes, fsync: bool = False) -> None:
    with atomic_write(path, fsync=fsync) as tmp:
        tmp.write_bytes(data)


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_write(path) as tmp:
        tmp.write_text(text)


def _json_safe(value: Any) -> Any:
    """NaN and infinities become ``null``: JSON has no such numbers (``json.dumps`` would write invalid JSON)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def write_json(path: str | os.PathLike, payload: Any) -> None:
    """Valid JSON (non-finite numbers as ``null``), indented, written atomically."""
    write_text(path, json.dumps(_json_safe(payload), indent=2, allow_nan=False) + "\n")


def encode_image(tmp: Path, img: np.ndarray, dest: Path | None = None) -> None:
    """``cv2.imwrite`` with its result checked (it returns False or raises ``cv2.error``)."""
    import cv2

    try:
        ok = cv2.imwrite(str(tmp), img)
    except cv2.error as e:
        raise OutputError(f"cannot encode {dest or tmp} ({img.dtype} {img.shape}): {str(e).strip()}") from e
    if not ok:
        raise OutputError(f"cannot encode {dest or tmp} ({img.dtype} {img.shape})")


def write_image(path: str | os.PathLike, img: np.ndarray) -> None:
    """Write an image (BGR or gray, uint8 or uint16) atomically; the suffix selects the format."""
    with atomic_write(path) as tmp:
        encode_image(tmp, img, Path(path))


_TEMP_NAME = re.compile(r"^\..*" + re.escape(TMP_MARK) + r"(\d+)-[0-9a-f]{6}")


def _alive(pid: int) -> bool:
    """Whether process ``pid`` still runs (then its temporary files are its own business)."""
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, owned by someone else
        return True
    return True


def remove_stale_temps(folder: str | os.PathLike, recursive: bool = False) -> list[Path]:
    """Remove temporary files that an interrupted writer left in ``folder`` (and below it, with
    ``recursive``; linked folders are not entered); returns what was removed. Only names that
    :func:`temp_path` makes are touched, and only those whose writing process (its pid is in the name)
    no longer runs, so a live writer's files stay."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=False):
        if not recursive:
            dirnames.clear()
        removed += [p for p in (Path(dirpath) / name for name in filenames) if _remove_if_stale(p)]
    return removed


def _remove_if_stale(p: Path) -> bool:
    """Remove ``p`` when it is a temporary file (:func:`temp_path`'s name) whose writer no longer runs."""
    m = _TEMP_NAME.match(p.name)
    if not m or p.is_symlink() or _alive(int(m.group(1))):
        return False
    try:
        p.unlink()
    except OSError:
        return False
    return True


def remove_stale_temps_of(paths: Sequence[str | os.PathLike]) -> list[Path]:
    """Remove the temporary files that an interrupted writer left for these outputs only (as
    :func:`remove_stale_temps`, but never another writer's in the same folder); returns what was removed."""
    removed = []
    by_folder: dict[Path, set[str]] = {}
    for p in map(Path, paths):
        by_folder.setdefault(p.parent, set()).add(f".{p.stem}{TMP_MARK}")
    for folder, prefixes in by_folder.items():
        if not folder.is_dir():
            continue
        removed += [e for e in folder.iterdir() if e.name.startswith(tuple(prefixes)) and _remove_if_stale(e)]
    return removed


LOCK_NAME = ".stereo.lock"


@contextlib.contextmanager
def output_lock(folder: str | os.PathLike, tool: str, name: str = LOCK_NAME, clean: bool = True) -> Iterator[None]:
    """Hold ``folder``'s lock while writing into it: a second tool writing into the same folder is
    refused in one line instead of interleaving its files. The lock is ``<folder>/.stereo.lock`` (it
    holds the owner's pid and tool), removed on release; the operating system releases the lock itself
    when the process ends, however it ends, so a killed run never blocks the next one. Once the lock is
    held, temporary files that interrupted writers left below ``folder`` are removed
    (:func:`remove_stale_temps`, each one logged). Writers that share a folder on purpose (the shards of
    one job) each take a lock of their own ``name`` and ``clean=False``: they remove only their own outputs'
    stale files (:func:`remove_stale_temps_of`)."""
    folder = Path(folder)
    path = folder / name
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"{folder}: cannot create the folder ({e.strerror or e})") from e
    for _ in range(20):
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise OutputError(f"{folder}: cannot create the folder's lock file ({e.strerror or e})") from e
        if not _try_lock(fd):
            owner = ""
            with contextlib.suppress(OSError):
                owner = os.pread(fd, 200, 0).decode(errors="replace").strip()
            os.close(fd)
            raise OutputError(
                f"{folder} is in use by another run ({owner or 'unknown'}); wait for it to finish or choose "
                "another output folder"
            )
        try:  # the previous holder may have removed the file between our open and our lock: retry then
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    else:
        raise OutputError(f"{folder}: could not take the folder's lock ({path} keeps changing)")
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()}, {tool}".encode(), 0)
        for p in remove_stale_temps(folder, recursive=True) if clean else []:
            log.info("removed %s, left by an interrupted run", p)
        yield
    finally:
        with contextlib.suppress(OSError):
            path.unlink()  # while still holding the lock, so nobody locks a file that is going away
        os.close(fd)


def _try_lock(fd: int) -> bool:
    try:
        import fcntl
    except ImportError:  # Windows
        import msvcrt

        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
            return True
        except OSError:
            return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
