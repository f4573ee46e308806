"""The user's image pairs for inference: single files, folders, or glob patterns, matched left to right.

Every pair gets a ``name``, the output path stem relative to the output folder, made only of the parts of
the input paths that vary between pairs:

- two files: the left file's stem;
- a folder: the path below it, without the extension (``scene1/0001``);
- a glob: what its wildcards matched, component by component, the file's extension dropped
  (``data/*/left/*.png`` gives ``scene1/0001`` for ``data/scene1/left/0001.png``, and so does
  ``data/*/right/*.png`` for its right image, so the two are paired).

So a name never holds ``..``, an absolute part or a literal folder of the pattern. Discovery never
follows a symbolic link into recursion (``**`` and folders do not descend through linked folders), skips
hidden files and folders (names starting with ``.``, as the shell does), and keeps each file (after
resolving links) once.
"""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path

from stereo.data.images import IMAGE_EXTENSIONS
from stereo.errors import ConfigError, MissingFileError


@dataclass(frozen=True)
class Pair:
    left: Path
    right: Path
    name: str  # output path stem relative to the output folder, e.g. "scene1/0001"


def _walk_images(folder: Path) -> list[Path]:
    """Image files below ``folder``, sorted, hidden entries skipped, linked folders not entered."""
    found = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for f in sorted(filenames):
            p = Path(dirpath) / f
            if not f.startswith(".") and p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file():
                found.append(p)
    return found


def _captures(pattern: tuple[str, ...], parts: tuple[str, ...]) -> list[str] | None:
    """The components of ``parts`` that the wildcard components of ``pattern`` matched (``**`` spans any
    number), or None when they do not match."""
    if not pattern:
        return [] if not parts else None
    head, rest = pattern[0], pattern[1:]
    if head == "**":
        for n in range(len(parts) + 1):
            tail = _captures(rest, parts[n:])
            if tail is not None:
                return list(parts[:n]) + tail
        return None
    if not parts or not fnmatchcase(parts[0], head):
        return None
    tail = _captures(rest, parts[1:])
    if tail is None:
        return None
    return ([parts[0]] if glob.has_magic(head) else []) + tail


def _unique(files: list[Path]) -> list[Path]:
    seen, out = set(), []
    for f in files:
        key = f.resolve()
        if key not in seen:
            seen.add(key)
            out.append(f)
    return out


def _expand(spec: str, side: str) -> list[tuple[str, Path]]:
    """(name, file) for a file, a folder (recursive) or a glob pattern."""
    p = Path(spec).expanduser()
    if p.is_file():
        return [(p.stem, p)]
    if p.is_dir():
        return [(f.relative_to(p).with_suffix("").as_posix(), f) for f in _unique(_walk_images(p))]
    if not glob.has_magic(spec):
        raise MissingFileError(f"{side}={spec}: no such file or directory (and not a glob pattern)")
    parts = p.parts
    first = next(i for i, q in enumerate(parts) if glob.has_magic(q))
    base, rest = Path(*parts[:first]) if first else Path("."), parts[first:]
    # pathlib's glob does not follow linked folders for "**" (glob.glob does, and loops on a link to a parent).
    files = sorted(f for f in base.glob(os.path.join(*rest)) if f.is_file())
    out = []
    for f in _unique(files):
        caught = _captures(rest, f.relative_to(base).parts)
        if caught is None or any(c.startswith(".") for c in caught):
            continue
        if glob.has_magic(rest[-1]):
            caught[-1] = Path(caught[-1]).stem
        out.append(("/".join(caught), f))
    return out


def find_pairs(left: str, right: str) -> list[Pair]:
    """Match left and right images by name (see the module docstring); errors name what is missing."""
    lefts, rights = _expand(left, "left"), _expand(right, "right")
    if not lefts:
        raise MissingFileError(f"left={left!r} matches no image ({', '.join(IMAGE_EXTENSIONS)})")
    if not rights:
        raise MissingFileError(f"right={right!r} matches no image ({', '.join(IMAGE_EXTENSIONS)})")
    if len(lefts) == 1 and len(rights) == 1 and Path(left).expanduser().is_file():
        return [Pair(lefts[0][1], rights[0][1], lefts[0][0])]
    by_name: dict[str, list[Path]] = {}
    for name, f in rights:
        by_name.setdefault(name, []).append(f)
    pairs, missing, seen = [], [], {}
    for name, f in lefts:
        seen.setdefault(name, []).append(f)
        if name in by_name:
            pairs.append(Pair(f, by_name[name][0], name))
        else:
            missing.append(f"{f} (as {name!r})")
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise MissingFileError(
            f"{len(missing)} left image(s) have no right image of the same name in right={right}: {shown}. "
            "Names are the paths below a folder, or what a pattern's wildcards matched"
        )
    _refuse_shared_names([*seen.values(), *by_name.values()])
    return pairs


def find_frames(frames: str) -> list[Pair]:
    """Frames that hold both views (side by side or top-bottom): a file, a folder or a glob, named as
    left images are; each :class:`Pair` has the frame as ``left`` and ``right``."""
    found = _expand(frames, "left")
    if not found:
        raise MissingFileError(f"left={frames!r} matches no image ({', '.join(IMAGE_EXTENSIONS)})")
    by_name: dict[str, list[Path]] = {}
    for name, f in found:
        by_name.setdefault(name, []).append(f)
    _refuse_shared_names(list(by_name.values()))
    return [Pair(f, f, name) for name, f in found]


def _refuse_shared_names(groups: list[list[Path]]) -> None:
    """One error for every output name that several images would share."""
    collisions = [" and ".join(str(f) for f in fs) for fs in groups if len(fs) > 1]
    if collisions:
        raise ConfigError(
            f"{len(collisions)} output name(s) would be shared by several images (their names differ only in "
            f"their extension or in a part no wildcard matched): {'; '.join(collisions[:5])}. "
            "Rename them, use a wildcard for the part that differs, or run each kind separately."
        )
