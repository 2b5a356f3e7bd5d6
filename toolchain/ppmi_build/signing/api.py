"""Public signing API (CLI-independent), in the style of sigstore-python's ``sign``/``verify``.

* :func:`sign_file` / :func:`sign_files` — Authenticode for ``.dll``/``.exe`` (built-in signer or an
  external back-end), NuGet author signatures for ``.nupkg`` (``ppmi_build.signing.nuget``).
* :func:`verify_file` — Authenticode (:mod:`ppmi_build.signing.verify`) or NuGet verification.
* :func:`signer_certificate` — the signer of a signed artifact (``fic --artifact``).

Signing is atomic (DESIGN.md rules; issue #2): the signed bytes go to a temp file beside the target
(``.<name>.ppmi-tmp-XXXX``, same folder so ``os.replace`` is atomic), the temp file is verified
cryptographically against the signing certificate — with the top of the key's own chain as the
trust anchor, since a private or self-signed root does not chain to the Microsoft store — then
fsynced and renamed over the target. On any failure the temp file is deleted and the original is
left untouched. Success is never reported for an unverified file.
"""

from __future__ import annotations

import hashlib
import mmap
import os
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, cast

from cryptography import x509

from ..errors import BadInput, InputFileError, PpmiError, SignatureInvalid
from .keys import KeySource, check_signing_certificate, hash_algorithm
from .pe import QuickGilHandoff as _QuickGilHandoff
from .results import SignResult, VerifyResult, kind_of
from .staging import (  # noqa: F401  (re-exported: cli.unsign, tests)
    MAX_PE_SIZE,
    TEMP_MARK,
    _check_source,
    _check_target,
    _is_read_only,
    _mode_for,
    _new_temp,
    _resolve_target,
    _unlink,
    _write_all,
)


def _kind(path: Path | str) -> str:
    return kind_of(path)


def atomic_write(target: Path, data: bytes | bytearray, *, mode: int | None = None) -> None:
    """Write ``data`` to ``target`` via a temp file in the same folder, fsync and ``os.replace``.

    Raises:
        InputFileError: the folder is not writable / disk full; the target is left untouched.
    """
    target = Path(target)
    _check_target(target)
    fd, tmp = _new_temp(target)
    try:
        os.fchmod(fd, mode if mode is not None else _mode_for(target, target))
        _write_all(fd, data, tmp)
        os.fsync(fd)
        os.close(fd)
        fd = -1
        os.replace(tmp, target)
    except BaseException:
        if fd >= 0:
            os.close(fd)
        _unlink(tmp)
        raise


def _sha256_file(path: Path) -> str:
    with open(path, "rb") as f:
        if os.fstat(f.fileno()).st_size == 0:
            return hashlib.sha256(b"").hexdigest()
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
            return hashlib.sha256(m).hexdigest()


def redact_url(url: str) -> str:
    """``url`` with any ``user:password@`` userinfo replaced by ``***@`` (for messages)."""
    from urllib.parse import urlsplit, urlunsplit

    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparsable URL>"
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc="***@" + parts.netloc.rsplit("@", 1)[1]))


def check_urls(urls: Sequence[str]) -> None:
    """Refuse timestamp URLs that are not absolute http(s) URLs, before anything is signed.

    Raises:
        BadInput: names the URL (userinfo redacted) and the fix.
    """
    from urllib.parse import urlsplit

    for url in urls:
        try:
            parts = urlsplit(str(url))
            ok = parts.scheme.lower() in ("http", "https") and bool(parts.hostname)
        except ValueError:
            ok = False
        if not ok:
            raise BadInput(f"timestamp URL {redact_url(str(url))!r} is not an http(s) URL; pass e.g. "
                           "--timestamp-url http://timestamp.digicert.com")


# --- verification of our own output ---------------------------------------------------------


def _finish_check(result: VerifyResult, key: KeySource, target: Path) -> str:
    """Common tail of the post-sign checks: the signer must be our leaf. Returns the anchor's name."""
    from ..identity.dn import dotnet_name

    chain = key.certificate_chain()
    result.path = target
    if result.valid and result.signer_certificate is not None and result.signer_certificate != chain[0]:
        result.valid = False
        result.problems.append("the output is signed by another certificate than the one given")
    return dotnet_name(chain[-1].subject)


def _post_sign_verify(tmp: Path, kind: str, key: KeySource, target: Path,
                      file_hash: bool = True) -> tuple[VerifyResult, str | None, str]:
    """Verify a temp file written by an external back-end or the NuGet signer against the key's own
    chain (its top certificate is the trust anchor). Returns (result, sha256_after, anchor name)."""
    anchor = key.certificate_chain()[-1]
    sha_holder: dict = {"v": None}

    def _sha() -> None:
        if file_hash:
            sha_holder["v"] = _sha256_file(tmp)

    t = threading.Thread(target=_sha, name="sha256-after")
    t.start()
    try:
        if kind == "package":
            from . import nuget

            result = nuget.verify_package(tmp, trusted_roots=[anchor], use_system_roots=False, check_tsa_chain=False)
        else:
            from .verify import verify_pe

            result = verify_pe(tmp, trusted_roots=[anchor], use_system_roots=False, use_signify=False,
                               check_tsa_chain=False)
    finally:
        t.join()
    return result, sha_holder["v"], _finish_check(result, key, target)


# --- signing --------------------------------------------------------------------------------


def sign_file(
    path: Path | str,
    key: KeySource,
    *,
    output: Path | str | None = None,
    timestamp_urls: Sequence[str] = (),
    digest: str = "sha256",
    program_name: str | None = None,
    program_url: str | None = None,
    backend: str = "python",
    overwrite: bool = False,
    sign_contents: bool = False,
    trusted_roots: Sequence[x509.Certificate] = (),
    file_hashes: bool = True,
    _many: bool = False,
) -> SignResult:
    """Sign one artifact: Authenticode for ``.dll``/``.exe``, a NuGet author signature for ``.nupkg``.

    Args:
        path: the artifact.
        key: signer (:func:`ppmi_build.signing.keys.load_key_source`).
        output: write here instead of in place (a file, or an existing folder).
        timestamp_urls: RFC 3161 TSAs, tried in order (fallbacks); empty = no timestamp.
        digest: ``sha256`` (default), ``sha384`` or ``sha512``.
        program_name / program_url: SpcSpOpusInfo description and URL (``signtool /d /du``).
        backend: ``auto`` | ``python`` | ``osslsigncode`` | ``signtool`` | ``nuget`` | ``dotnet``.
        overwrite: packages: replace an existing signature (NuGet needs it, NU3001); assemblies
            are always re-signed (the old signature is replaced and that is reported).
        sign_contents: packages: Authenticode-sign the assemblies inside first.
        trusted_roots: unused for signing; accepted for API symmetry (verification after signing
            trusts the key's own chain).
        file_hashes: compute ``sha256_before``/``sha256_after`` of the whole files (two extra SHA-256
            passes); False leaves them None (the CLI's human output does not show them).
    Returns:
        :class:`SignResult` (``verified`` is always True: a failed check raises).
    Raises:
        InputFileError (missing input, read-only target), PEFormatError, PackageFormatError,
        CertificateError (EKU, key size, validity), TimestampError, ToolNotFound, ToolFailed,
        SignatureInvalid (the output failed verification; the original is untouched).
    """
    from ..identity.certificates import describe

    path = Path(path)
    kind = _kind(path)
    digest = hash_algorithm(digest).name
    check_urls(timestamp_urls)
    be: Any  # _BUILTIN or a backends.Backend
    if kind == "assembly" and (backend or "auto").lower() in ("python", "auto"):
        be = _BUILTIN  # backends.AUTO["assembly"] is the built-in signer; the back-end table is not imported
    else:
        from .backends import resolve_backend

        be = resolve_backend(backend, kind)
    _check_source(path)
    target = _resolve_target(path, Path(output) if output is not None else None, _many)
    _check_target(target)
    leaf = key.certificate_chain()[0]
    check_signing_certificate(leaf, label=key.description, nuget=(kind == "package"))

    fd, tmp = _new_temp(target)
    notes: list[str] = []
    try:
        os.fchmod(fd, _mode_for(target, path))
        if be.name == "python" and kind == "assembly":
            with _QuickGilHandoff():
                sha_before, sha_after, result, anchor, outcome = _builtin_sign_assembly(
                    path, fd, tmp, target, key, digest, program_name, program_url, timestamp_urls, file_hashes)
        else:
            from .backends import SignOptions

            os.close(fd)
            fd = -1
            sha_before = _sha256_file(path) if file_hashes else None
            outcome = be.sign(path, tmp, key, SignOptions(timestamp_urls=tuple(timestamp_urls), digest=digest,
                                                          program_name=program_name, program_url=program_url,
                                                          overwrite=overwrite, sign_contents=sign_contents))
            os.chmod(tmp, _mode_for(target, path))  # a tool may have re-created the file
            fd = os.open(tmp, os.O_RDONLY)
            syncer = _Fsync(fd)  # flush to disk while verifying (fsync waits without the GIL)
            try:
                result, sha_after, anchor = _post_sign_verify(tmp, kind, key, target, file_hashes)
            finally:
                syncer.wait()
        os.close(fd)
        fd = -1
        if not result.valid:
            raise SignatureInvalid(
                f"{path.name}: the signed output did not verify ({'; '.join(result.problems)}); "
                "the original file is unchanged"
            )
        if outcome.get("timestamped") and not result.timestamp:
            raise SignatureInvalid(f"{path.name}: the output carries no valid timestamp; the original is unchanged")
        os.replace(tmp, target)
    except BaseException:
        if fd >= 0:
            os.close(fd)
        _unlink(tmp)
        raise
    if outcome.get("replaced_signature"):
        notes.append("replaced an existing signature")
    notes.append(f"verified against the key's own chain (trust anchor {anchor})")
    return SignResult(
        path=target, kind=kind, sha256_before=sha_before, sha256_after=sha_after, signer=describe(leaf),
        timestamped=bool(result.timestamp), verified=True,
        replaced_signature=bool(outcome.get("replaced_signature")), backend=be.name, notes=notes,
    )


class _Builtin:
    """Stands for ``backends.BACKENDS["python"]`` on the built-in Authenticode path (only ``name`` is used)."""

    name = "python"


_BUILTIN = _Builtin()


class _Fsync:
    """fsync a descriptor on a helper thread (the wait happens without the GIL)."""

    def __init__(self, fd: int):
        from .pe import submit

        self.job = submit(os.fsync, fd)

    def wait(self) -> None:
        try:
            self.job.result()
        except OSError as e:  # pragma: no cover - disk errors
            raise InputFileError(f"cannot write the signed file: {e.strerror}") from None


def _builtin_sign_assembly(path: Path, fd: int, tmp: Path, target: Path, key: KeySource, digest: str,
                           program_name, program_url, timestamp_urls, file_hashes: bool):
    """The built-in Authenticode path, arranged so the passes over a 16 MiB image overlap:

    1. the input is mapped copy-on-write; the authentihash, the checksum words, (``file_hashes``)
       the input's SHA-256 and the copy of the image into the temp file ``fd`` (by the kernel,
       ``copy_file_range``) run on helper threads
       (:class:`ppmi_build.signing.pe.SigningPasses`);
    2. once signed and the copy is done, the new certificate-table directory entry, the padding
       and the WIN_CERTIFICATE are written, then the 4-byte CheckSum (the checksum words may still
       be summed until then);
    3. the file is flushed to disk (fsync on a helper thread: the wait needs no GIL) while it is
       read back, compared byte for byte with what was signed (the mapped image with the patched
       header, then the table) and verified (:func:`ppmi_build.signing.verify.verify_signed_image`).

    Returns ``(sha256_before, sha256_after, VerifyResult, anchor name, outcome dict)``.
    """
    from . import pe
    from .authenticode import sign_pe_data
    from .verify import verify_signed_image

    src_fd, mapping = pe.open_image(path)
    try:
        passes = pe.SigningPasses(mapping, path.name, digest, input_sha256=file_hashes, owns=mapping,
                                  src_fd=src_fd, copy_to=fd)
    except BaseException:
        mapping.close()
        os.close(src_fd)
        raise
    syncer = None
    head = memoryview(passes.data)[:passes.image_length]
    try:
        outcome = sign_pe_data(passes.data, key, name=path.name, digest=digest, program_name=program_name,
                               program_url=program_url, timestamp_urls=timestamp_urls, passes=passes,
                               defer_checksum=True)
        layout = passes.layout
        cd, ck = layout.cert_dir_offset, layout.checksum_offset
        try:
            passes.copied()
            pe.pwrite_all(fd, head[cd:cd + 8], cd)
            pe.pwrite_all(fd, outcome.tail, passes.image_length)
            outcome.complete_checksum()  # stored in `head` too
            pe.pwrite_all(fd, head[ck:ck + 4], ck)
        except OSError as e:
            raise InputFileError(f"cannot write {tmp.parent}: {e.strerror or e}") from None
        syncer = _Fsync(fd)

        def _after() -> str:
            h = hashlib.sha256(head)
            h.update(outcome.tail)
            return h.hexdigest()

        # SHA-256 of the signed bytes beside the read-back (hashlib needs no GIL)
        hasher = pe.submit(_after) if file_hashes else None
        try:
            result = verify_signed_image(tmp, (head, outcome.tail), authentihash=outcome.authentihash,
                                         digest=outcome.digest, hashed_ranges=outcome.hashed_ranges,
                                         trusted_roots=[key.certificate_chain()[-1]])
        finally:
            sha_after = hasher.result() if hasher is not None else None
    finally:
        try:
            if syncer is not None:  # before the descriptor is closed, also when unwinding
                syncer.wait()
        finally:
            head.release()
            passes.close()  # also closes the mapping: before the rename (Windows cannot replace a mapped file)
    anchor = _finish_check(result, key, target)
    return (outcome.input_sha256, sha_after, result, anchor,
            {"replaced_signature": outcome.replaced_signature, "timestamped": outcome.timestamped})


class BatchSignError(PpmiError):
    """Some files of a :func:`sign_files` batch were signed and some were not.

    Attributes:
        outcomes: one dict per input, in input order: the :meth:`SignResult.to_json` record plus
            ``"status": "signed"``, or ``{"path", "status": "failed" | "skipped", "error": {message, code,
            exit_code}}``.
        exit_code: the worst exit code of the failed files.
    """

    def __init__(self, message: str, outcomes: list[dict], exit_code: int):
        super().__init__(message, exit_code=exit_code)
        self.outcomes = outcomes


def _precheck(path: Path, target: Path) -> None:
    """Everything that can be checked about one input before any file of a batch is written:
    a readable regular file, a PE image / zip archive, a replaceable target.

    Raises:
        InputFileError, PEFormatError, PackageFormatError.
    """
    _check_source(path)
    _check_target(target)
    if _kind(path) == "package":
        import zipfile

        from ..errors import PackageFormatError

        if not zipfile.is_zipfile(path):
            raise PackageFormatError(f"{path} is not a zip archive, so not a NuGet package; pass a .nupkg file")
    else:
        from . import pe

        mapping = pe.map_file(path)
        try:
            pe.parse(mapping, str(path))
        finally:
            mapping.close()


def sign_files(paths: Iterable[Path | str], key: KeySource, *, workers: int | None = None, **kw) -> list[SignResult]:
    """Sign several artifacts in one process (same options as :func:`sign_file`; ``output`` must be
    a folder when there are several). Files are signed concurrently (hashing and I/O run without the
    GIL); results come back in input order. Each file is atomic on its own.

    Every input is checked first (exists, regular file, PE/zip parses, target writable): one bad
    input refuses the whole batch before anything is written. When a later step still fails for
    some files (e.g. a timestamp server), the others are signed and :class:`BatchSignError` reports
    each file's outcome; files not yet started when the first error happened are skipped.

    Raises:
        BadInput: the same target twice, ``output`` is not a folder for several files, an input
            fails the checks. BatchSignError: some files failed after signing started.
        Any error of :func:`sign_file` (one file).
    """
    paths = cast("list[Path]", [Path(p) for p in paths])
    if not paths:
        raise BadInput("no artifact given; pass one or more .dll, .exe or .nupkg files")
    check_urls(kw.get("timestamp_urls") or ())
    output = kw.get("output")
    many = len(paths) > 1
    if many and output is not None and not Path(output).is_dir():
        raise BadInput(f"-o {output} must be an existing folder when signing several files")
    targets = [_resolve_target(p, Path(output) if output is not None else None, many) for p in paths]
    seen: set[Path] = set()
    r: Path | SignResult | None
    for t in targets:
        r = t.resolve()
        if r in seen:
            raise BadInput(f"{t} is given twice; each artifact can be signed once per call")
        seen.add(r)
    if not many:
        return [sign_file(paths[0], key, **kw)]
    for p, t in zip(paths, targets, strict=True):
        try:
            _precheck(p, t)
        except PpmiError as e:
            e.message = f"{e.message} (nothing was signed)"
            e.args = (e.message,)
            raise e from None
    from concurrent.futures import ThreadPoolExecutor

    # one more worker than cores: each file also waits on fsync, which needs no CPU
    workers = workers or min(len(paths), (os.cpu_count() or 2) + 1)
    stop = threading.Event()

    def one(p: Path) -> SignResult | None:
        if stop.is_set():
            return None
        try:
            return sign_file(p, key, _many=True, **kw)
        except BaseException:
            stop.set()
            raise

    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ppmi-sign") as pool:
        futures = [pool.submit(one, p) for p in paths]
        results: list[SignResult] = []
        outcomes: list[dict] = []
        errors: list[PpmiError] = []
        for p, t, fut in zip(paths, targets, futures, strict=True):
            try:
                r = fut.result()
            except PpmiError as e:
                errors.append(e)
                outcomes.append({"path": str(t), "status": "failed",
                                 "error": {"message": e.message, "code": e.code, "exit_code": e.exit_code}})
                continue
            if r is None:
                outcomes.append({"path": str(t), "status": "skipped",
                                 "error": {"message": f"{p} was not signed: an earlier file failed",
                                           "code": None, "exit_code": 2}})
            else:
                results.append(r)
                outcomes.append({**r.to_json(), "status": "signed"})
    if errors:
        if not results:
            raise errors[0]
        failed = [o["path"] for o in outcomes if o["status"] != "signed"]
        raise BatchSignError(
            f"signed {len(results)} of {len(paths)} files; not signed: {', '.join(failed)} ({errors[0].message})",
            outcomes, max(e.exit_code for e in errors))
    return results


# --- verification ---------------------------------------------------------------------------


def verify_file(path: Path | str, *, trusted_roots: Sequence[x509.Certificate] = ()) -> VerifyResult:
    """Verify an artifact's signature (Authenticode for PE files, NuGet for ``.nupkg``).

    Raises:
        InputFileError (missing), PEFormatError / PackageFormatError (not a signable file).
    """
    path = Path(path)
    _check_source(path)
    if _kind(path) == "package":
        from . import nuget

        return nuget.verify_package(path, trusted_roots=list(trusted_roots))
    from .verify import verify_pe

    return verify_pe(path, trusted_roots=list(trusted_roots))


def signer_certificate(path: Path | str) -> x509.Certificate:
    """The signer certificate of a signed ``.dll``/``.exe``/``.nupkg``.

    Raises:
        InputFileError, PEFormatError/PackageFormatError, BadInput (not signed).
    """
    path = Path(path)
    _check_source(path)
    if _kind(path) == "package":
        from . import nuget

        return nuget.signer_certificate(path)
    from .verify import signer_certificate as pe_signer

    return pe_signer(path)
