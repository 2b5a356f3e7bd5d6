"""Writing files so that a failed run loses nothing (working agreement: "write to a temp file beside the target and
rename; failed runs leave the original untouched and no temp file behind").

``os.replace`` is atomic on POSIX when source and target are on the same file system (rename(2)), hence the temp
file in the target's own folder; ``fsync`` before the rename so a crash cannot leave a renamed but empty file.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import BinaryIO

from .errors import InputFileError


def atomic_write(path: Path | str, data: bytes | bytearray, *, mode: int | None = None) -> Path:
    """Write ``data`` to ``path`` through a temporary file in the same folder, ``fsync`` and ``os.replace``.

    Args:
        path: the target file.
        data: its new content.
        mode: permission bits (``0o600`` for secrets: PFX, ``.snk``). Default: keep the existing file's bits,
            ``0o644`` for a new file. The temporary file has these bits before any byte is written
            (``mkstemp`` creates it 0600).
    Returns:
        ``path`` (as a :class:`~pathlib.Path`).
    Raises:
        InputFileError: the folder does not exist or is not writable, or writing fails (disk full); the target is
            then either the old file or absent as before, and no temporary file is left.
    """
    import tempfile

    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    except FileNotFoundError:
        raise InputFileError(f"folder {folder} does not exist; create it or pass another output folder") from None
    except OSError as e:
        raise InputFileError(f"cannot write to {folder}: {e.strerror}; choose a writable output folder") from None
    try:
        if mode is None:
            try:
                mode = path.stat().st_mode & 0o7777
            except FileNotFoundError:
                mode = 0o644
        with os.fdopen(fd, "wb") as fh:
            os.fchmod(fh.fileno(), mode)
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(e, OSError):
            raise InputFileError(f"cannot write {path}: {e.strerror}") from None
        raise
    return path


def read_input(path: Path | str, *, missing: str) -> bytes:
    """Read an input file whole.

    Args:
        path: the file.
        missing: the fix to name when it does not exist (e.g. "pass the plug-in project (.csproj)").
    Raises:
        InputFileError: ``{path} does not exist; {missing}``, or ``cannot read {path}: {reason}``.
    """
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise InputFileError(f"{path} does not exist; {missing}") from None
    except OSError as e:
        raise InputFileError(f"cannot read {path}: {e.strerror}") from None


def open_input(path: Path | str, *, directory_fix: str, what: str = "") -> BinaryIO:
    """Open a file the user named for reading (``"rb"``).

    Args:
        path: the file.
        directory_fix: what to pass instead when ``path`` is a folder (e.g. ``"pass a .nupkg file"``).
        what: how to name it before the path in messages (e.g. ``"package"``); none by default.
    Raises:
        InputFileError: missing, a folder, not readable, or another OS error; one line naming the file and the fix.
    """
    label = f"{what} {path}" if what else str(path)
    try:
        return open(path, "rb")
    except FileNotFoundError:
        raise InputFileError(f"{label} does not exist; check the path") from None
    except IsADirectoryError:
        raise InputFileError(f"{path} is a directory; {directory_fix}") from None
    except PermissionError:
        raise InputFileError(f"{label} is not readable (permission denied); fix its permissions") from None
    except OSError as e:
        raise InputFileError(f"cannot read {label}: {e.strerror}") from None
