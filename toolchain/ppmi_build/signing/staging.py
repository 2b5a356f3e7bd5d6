"""Staging signed output beside its target (signing-spec §6): input and target checks,
the ``.<name>.ppmi-tmp-XXXXXXXX`` temp file (created exclusively, mode 0600 until set) that is
written, verified and then renamed over the target (``os.replace``: atomic within one folder).
Used by :mod:`ppmi_build.signing.api` and ``ppmi-build unsign``.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from ..errors import InputFileError

TEMP_MARK = ".ppmi-tmp-"
#: seconds since its last write after which a temp file of an earlier run counts as stale (when no live process
#: has it open, see :func:`remove_stale_temps`)
STALE_TEMP_AGE = 60.0


def kind_of(path: Path | str) -> str:
    """``"package"`` for ``.nupkg``, otherwise ``"assembly"`` (PE: .dll/.exe)."""
    return "package" if str(path).lower().endswith(".nupkg") else "assembly"


#: PE files cannot exceed 4 GiB (32-bit offsets in the headers, PE/COFF specification); Dataverse takes 16 MB
MAX_PE_SIZE = 0xFFFFFFFF


def _file_kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def _check_source(path: Path) -> None:
    """The input must be an existing, readable regular file (a symbolic link to one is fine for
    reading). FIFOs and devices are refused before they are opened (opening a FIFO blocks).

    Raises:
        InputFileError: missing, a directory, a FIFO/device/socket, unreadable, or a PE file over 4 GiB.
    """
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise InputFileError(f"{path} does not exist; check the path") from None
    except OSError as e:
        raise InputFileError(f"cannot read {path}: {e.strerror}") from None
    if stat.S_ISDIR(st.st_mode):
        raise InputFileError(f"{path} is a directory; pass a .dll, .exe or .nupkg file")
    if not stat.S_ISREG(st.st_mode):
        raise InputFileError(f"{path} is {_file_kind(st.st_mode)}, not a regular file; pass a .dll, .exe or "
                             ".nupkg file")
    if not os.access(path, os.R_OK):
        raise InputFileError(f"{path} is not readable (permission denied); fix its permissions")
    if st.st_size > MAX_PE_SIZE and kind_of(path) == "assembly":
        from ..errors import PEFormatError

        raise PEFormatError(f"{path} is {st.st_size} bytes; a PE file cannot exceed 4 GiB (Dataverse accepts "
                            "16 MB): pass the right file")


def _is_read_only(path: Path) -> bool:
    st = path.stat()
    # os.access alone is not enough when running as root (it ignores the mode bits)
    return not os.access(path, os.W_OK) or not (st.st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))


def _check_target(target: Path) -> None:
    """The file to be replaced must be absent or a writable regular file (not a symbolic link, FIFO,
    device or directory: the final rename would replace the link or special file itself).

    Raises:
        InputFileError: with the fix in the message.
    """
    folder = target.parent
    if not folder.is_dir():
        raise InputFileError(f"output folder {folder} does not exist; create it first")
    try:
        st = os.lstat(target)
    except FileNotFoundError:
        st = None
    if st is not None:
        if stat.S_ISLNK(st.st_mode):
            try:
                dest = os.readlink(target)
            except OSError:  # pragma: no cover
                dest = "?"
            real = (target.parent / dest) if not os.path.isabs(dest) else Path(dest)
            raise InputFileError(f"{target} is a symbolic link to {dest}; sign {real} (or write elsewhere with "
                                 "-o OUT)")
        if stat.S_ISDIR(st.st_mode):
            raise InputFileError(f"{target} is a directory; pass a file path to -o")
        if not stat.S_ISREG(st.st_mode):
            raise InputFileError(f"{target} is {_file_kind(st.st_mode)}, not a regular file; it would be replaced: "
                                 "write to a regular file path with -o OUT")
        if _is_read_only(target):
            if _read_only_fs(folder):
                raise InputFileError(f"{target} is on a read-only file system; write elsewhere with -o OUT")
            raise InputFileError(
                f"{target} is read-only; make it writable (chmod u+w {target.name}) or write elsewhere with -o OUT"
            )
    if _read_only_fs(folder):
        raise InputFileError(f"{folder} is on a read-only file system; write elsewhere with -o OUT")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise InputFileError(f"cannot write in {folder} (permission denied); sign a copy elsewhere with -o OUT")


def sha256_file(path: Path | str) -> str:
    """Lower-case hex SHA-256 of a whole file, read in chunks (not mapped: a file truncated meanwhile
    would fault). Raises OSError."""
    import hashlib

    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _read_only_fs(folder: Path) -> bool:
    """The folder's file system is mounted read-only (``statvfs`` ST_RDONLY; False where unknown)."""
    try:
        return bool(os.statvfs(folder).f_flag & getattr(os, "ST_RDONLY", 0))
    except (OSError, AttributeError):
        return False


def _open_by_a_process(paths: set[str]) -> set[str]:
    """Those of ``paths`` some process holds open (Linux: the ``/proc/PID/fd`` links; processes whose descriptors
    this user cannot read are not seen). Empty where ``/proc`` does not exist."""
    found: set[str] = set()
    try:
        pids = [e.name for e in os.scandir("/proc") if e.name.isdigit()]
    except OSError:
        return found
    for pid in pids:
        try:
            with os.scandir(f"/proc/{pid}/fd") as fds:
                for fd in fds:
                    try:
                        link = os.readlink(fd.path)
                    except OSError:
                        continue
                    if link in paths:
                        found.add(link)
        except OSError:
            continue
    return found


def remove_stale_temps(target: Path, *, now: float | None = None) -> list[Path]:
    """Remove the temp files an interrupted earlier run (SIGKILL, power loss) left beside ``target``, and say so
    on stderr (``note: removed …``).

    A file is stale when its name is ``.<target name>.ppmi-tmp-`` + 8 hex digits (:func:`_new_temp`), it is a
    regular file last written more than :data:`STALE_TEMP_AGE` seconds ago, and no process has it open
    (``/proc/*/fd``, :func:`_open_by_a_process`): a run that is still signing holds its temp file open until
    the rename, even while it waits for a timestamp server. Files that cannot be removed are left alone.

    Returns:
        the files removed.
    """
    import sys
    import time

    prefix = f".{target.name}{TEMP_MARK}"
    now = time.time() if now is None else now
    old: list[Path] = []
    try:
        entries = list(os.scandir(target.parent))
    except OSError:
        return []
    for e in entries:
        tail = e.name[len(prefix):]
        if not (e.name.startswith(prefix) and len(tail) == 8 and all(c in "0123456789abcdef" for c in tail)):
            continue
        try:
            st = e.stat(follow_symlinks=False)
        except OSError:
            continue
        if stat.S_ISREG(st.st_mode) and now - st.st_mtime > STALE_TEMP_AGE:
            old.append(Path(e.path))
    if not old:
        return []
    held = _open_by_a_process({os.path.abspath(p) for p in old})
    removed = []
    for p in old:
        if os.path.abspath(p) in held:
            continue
        try:
            os.unlink(p)
        except OSError:
            continue
        removed.append(p)
    if removed:
        print(f"note: removed {len(removed)} stale temporary file(s) of {target.name} left by an interrupted run "
              f"(older than {STALE_TEMP_AGE:g} s, open in no process): {', '.join(p.name for p in removed)}",
              file=sys.stderr)
    return removed


def _new_temp(target: Path) -> tuple[int, Path]:
    """``.<name>.ppmi-tmp-XXXXXXXX`` beside ``target``, created exclusively with mode 0600 (like
    ``tempfile.mkstemp``, without importing tempfile at start-up). Stale temp files of ``target`` left by an
    interrupted run are removed first (:func:`remove_stale_temps`)."""
    remove_stale_temps(target)
    for _ in range(100):
        tmp = target.parent / f".{target.name}{TEMP_MARK}{os.urandom(4).hex()}"
        try:
            fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o600)
        except FileExistsError:
            continue
        except OSError as e:
            raise InputFileError(f"cannot create a temporary file in {target.parent}: {e.strerror}") from None
        return fd, tmp
    raise InputFileError(f"cannot create a temporary file in {target.parent}")  # pragma: no cover


def _mode_for(target: Path, source: Path) -> int:
    ref = target if target.exists() else source
    try:
        return stat.S_IMODE(ref.stat().st_mode)
    except OSError:  # pragma: no cover
        return 0o644


def _write_all(fd: int, data, tmp: Path) -> None:
    mv = memoryview(data)
    try:
        while mv:
            n = os.write(fd, mv)
            mv = mv[n:]
    except OSError as e:
        raise InputFileError(f"cannot write {tmp.parent}: {e.strerror}") from None
    finally:
        mv.release()


def _unlink(path: Path) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _resolve_target(path: Path, output: Path | None, many: bool) -> Path:
    if output is None:
        return path
    output = Path(output)
    if output.is_dir() or (many and not output.suffix):
        return output / path.name
    return output
