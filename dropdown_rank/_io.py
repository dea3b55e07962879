"""Atomic artifact writes: write to a temporary file in the target directory, then rename.

A reader (or a resumed run) never sees a half-written file: ``os.replace`` is atomic on POSIX
when source and target share a filesystem, which holds because the temporary file sits next to the
target.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

_UMASK = os.umask(0)
os.umask(_UMASK)


@contextlib.contextmanager
def atomic_path(path: str | Path):
    """Yield a temporary path next to ``path``; rename it onto ``path`` if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        # mkstemp creates 0600; give the artifact the permissions a plain open() would.
        os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def write_json(path: str | Path, payload) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(payload, indent=2, default=_json_default) + "\n")


def read_json(path: str | Path):
    return json.loads(Path(path).read_text())


def write_parquet(path: str | Path, frame) -> None:
    with atomic_path(path) as tmp:
        frame.to_parquet(tmp, index=False)


def write_npz(path: str | Path, **arrays) -> None:
    """Compressed, like the Parquet artifacts, so storage comparisons between them are fair."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as handle:
            np.savez_compressed(handle, **arrays)


def stage_and_swap(target: str | Path, write, owned: set, marker: str, what: str):
    """Run ``write(staging)`` into a fresh staging directory beside ``target``, then swap it in whole.

    A kill at any moment leaves ``target`` as it was (or, between the two renames of the swap, kept
    as ``.NAME.previous``, which the next call puts back first). ``target`` is replaced only if it is
    empty or holds nothing but the entries this writer makes (``owned``, including its ``marker``
    file): anything else in it was not created by this tool, and the call is refused. Returns what
    ``write`` returns.
    """
    target = Path(target)
    staging, previous = target.parent / f".{target.name}.building", target.parent / f".{target.name}.previous"
    if not target.exists() and previous.is_dir():  # killed between the two renames of a swap
        previous.rename(target)
    if target.exists() and not target.is_dir():
        raise ValueError(f"{target}: --out is a file, not a directory")
    entries = {entry.name for entry in target.iterdir()} if target.is_dir() else set()
    if entries and (marker not in entries or entries - owned):
        foreign = sorted(entries - owned) or sorted(entries)
        raise ValueError(f"{target}: exists and holds what this tool did not write as {what} ({', '.join(foreign[:5])}); "
                         "refusing to replace it: choose another --out")
    shutil.rmtree(staging, ignore_errors=True)
    shutil.rmtree(previous, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        result = write(staging)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if target.exists():
        target.rename(previous)
    staging.rename(target)
    shutil.rmtree(previous, ignore_errors=True)
    return result

