"""What a finished checkpoint step must contain, recorded when it is saved and checked on restore.

A step directory written by orbax can be damaged after the fact (a disk that filled up, a copy cut
short, a file truncated by hand) and orbax only notices deep inside a restore, as a page of
tracebacks. So every step carries a manifest, ``remoteclip_manifest.json``: the size and CRC-32 of
every file in the step directory, written once all processes' data is on disk. `inspect_step` reads
the directory back against it before anything is restored.

Two files are left out of the manifest because orbax itself rewrites them when it commits the step
(after the manifest is written): the step metadata ``_CHECKPOINT_METADATA`` (it gains the commit
time; it must still be present and readable) and the top-level ``commit_success.txt``.

A step without a manifest (written before manifests existed, or by a writer that stopped between
orbax's commit and the manifest) is "unverified": usable when orbax's own markers are in place.
"""
from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import zlib

from remoteclip_jax import files

MANIFEST_NAME = "remoteclip_manifest.json"
FORMAT_VERSION = 1
# Written or rewritten by orbax when it commits the step, i.e. after the manifest.
_COMMIT_FILES = ("_CHECKPOINT_METADATA", "commit_success.txt")
STEP_METADATA = "_CHECKPOINT_METADATA"
_CHUNK = 4 << 20

INTACT, UNVERIFIED, DAMAGED = "intact", "unverified", "damaged"


@dataclasses.dataclass(frozen=True)
class StepIntegrity:
    """The verdict on one step directory.

    Attributes:
        status: `INTACT` (matches its manifest), `UNVERIFIED` (no manifest, orbax's markers are
            present) or `DAMAGED`.
        reason: for a damaged step, the first thing found wrong (names the file); else "".
    """

    status: str
    reason: str = ""

    @property
    def usable(self) -> bool:
        return self.status != DAMAGED


def _crc32(path: pathlib.Path) -> int:
    # CRC-32 (as zip and gzip use) finds accidental damage; it reads ~3x faster than SHA-256
    # here, which matters because a resume checks every byte of a multi-GB train state.
    crc = 0
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            crc = zlib.crc32(chunk, crc)
    return crc


def _recorded_files(step_dir: pathlib.Path) -> list[str]:
    """Relative POSIX paths of the files the manifest covers, sorted."""
    return [name for name in files.relative_files(step_dir)
            if name not in (*_COMMIT_FILES, MANIFEST_NAME)]


def write_manifest(step_dir: str | os.PathLike) -> pathlib.Path:
    """Records the size and checksum of every file under `step_dir` (atomically).

    Call it once every process's files are written (orbax's finalisation is done).

    Args:
        step_dir: a checkpoint step directory (orbax's temporary one or the committed one).

    Returns:
        The manifest's path.
    """
    step_dir = files.as_path(step_dir)
    recorded = {name: {"size": files.size(step_dir / name), "crc32": _crc32(step_dir / name)}
                for name in _recorded_files(step_dir)}
    payload = json.dumps({"format": FORMAT_VERSION, "files": recorded}, indent=1, sort_keys=True)
    target = step_dir / MANIFEST_NAME
    with files.atomic_write(target) as f:  # a reader sees no manifest or the whole one
        f.write(payload)
    return target


def has_manifest(step_dir: str | os.PathLike) -> bool:
    return (files.as_path(step_dir) / MANIFEST_NAME).is_file()


def inspect_step(step_dir: str | os.PathLike, items: tuple[str, ...] = ()) -> StepIntegrity:
    """Checks a step directory against its manifest (or, without one, against orbax's markers).

    Args:
        step_dir: a committed checkpoint step directory.
        items: the item subdirectories every step must have (checked when there is no manifest).

    Returns:
        The `StepIntegrity` verdict; reads every recorded file once when there is a manifest.
    """
    step_dir = files.as_path(step_dir)
    if not step_dir.is_dir():
        return StepIntegrity(DAMAGED, f"{step_dir} is not a directory")
    metadata = step_dir / STEP_METADATA
    try:
        json.loads(metadata.read_text())
    except (OSError, ValueError) as e:
        return StepIntegrity(DAMAGED, f"{metadata} (orbax's step record) is unreadable: "
                                      f"{type(e).__name__}")
    manifest_path = step_dir / MANIFEST_NAME
    if not manifest_path.exists():
        for item in items:
            if not (step_dir / item).is_dir():
                return StepIntegrity(DAMAGED, f"{step_dir / item} is missing")
        return StepIntegrity(UNVERIFIED)
    try:
        manifest = json.loads(manifest_path.read_text())
        recorded = dict(manifest["files"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        return StepIntegrity(DAMAGED, f"{manifest_path} is unreadable: {type(e).__name__}")
    for name, expected in sorted(recorded.items()):
        path = step_dir / name
        if not path.is_file():
            return StepIntegrity(DAMAGED, f"{path} is missing")
        size = files.size(path)
        if size != expected["size"]:
            return StepIntegrity(DAMAGED, f"{path} has {size} bytes, {expected['size']} were "
                                          f"written")
    # Sizes first (cheap), then contents.
    for name, expected in sorted(recorded.items()):
        path = step_dir / name
        if _crc32(path) != expected["crc32"]:
            return StepIntegrity(DAMAGED, f"{path} differs from what was written (CRC-32)")
    return StepIntegrity(INTACT)
