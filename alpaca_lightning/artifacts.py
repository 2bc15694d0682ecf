"""Atomic artifacts: a file or folder is either complete on disk or absent, never half-written.

Files are written to a temporary name and renamed; folders get a ``COMPLETE`` marker as their last step.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import pandas as pd

from alpaca_lightning.errors import StorageError
from alpaca_lightning.killpoints import kill_point

COMPLETE_MARKER = "COMPLETE"
_DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


def _storage_error(err: BaseException, target: Path) -> BaseException:
    """A full disk or quota becomes an error that says what was not written and what to do; others pass as they are."""
    if isinstance(err, OSError) and err.errno in _DISK_FULL:
        return StorageError(
            f"Writing {target} failed: {os.strerror(err.errno)}. Nothing half-written was kept. Free space on that "
            f"disk (or point paths.output_dir at a larger one) and run the same command again: complete artifacts "
            f"are reused."
        )
    return err


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda handle: handle.write(text))


def atomic_write(path: Path, write: Callable[[IO], Any], binary: bool = False) -> None:
    """``write(handle)`` into a temporary file beside ``path``, then rename it into place: complete or absent."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb" if binary else "w") as handle:
            write(handle)
        kill_point(f"write {path}")
        os.replace(tmp, path)
    except BaseException as err:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        converted = _storage_error(err, path)
        if converted is err:
            raise
        raise converted from err


def atomic_write_json(path: Path, payload: Any) -> None:
    atomic_write_text(path, json.dumps(payload, indent=2, default=_json_default) + "\n")


def atomic_write_csv(path: Path, frame: pd.DataFrame) -> None:
    atomic_write_text(path, frame.to_csv(index=False))


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):  # numpy / torch scalars
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)


def read_json(path: Path) -> Any:
    with open(path) as handle:
        return json.load(handle)


@contextlib.contextmanager
def atomic_directory(target: Path) -> Iterator[Path]:
    """Yield a temporary folder beside ``target``; on success it is marked complete and renamed into place."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        yield tmp
        kill_point(f"filled {target}")
        (tmp / COMPLETE_MARKER).write_text("ok\n")
        kill_point(f"marked {target}")
        shutil.rmtree(target, ignore_errors=True)
        kill_point(f"removed old {target}")
        os.replace(tmp, target)
    except BaseException as err:
        shutil.rmtree(tmp, ignore_errors=True)
        converted = _storage_error(err, target)
        if converted is err:
            raise
        raise converted from err


def is_complete(folder: Path) -> bool:
    return (Path(folder) / COMPLETE_MARKER).is_file()


def mark_complete(folder: Path, payload: dict[str, Any] | None = None) -> None:
    atomic_write_json(Path(folder) / COMPLETE_MARKER, payload or {})
