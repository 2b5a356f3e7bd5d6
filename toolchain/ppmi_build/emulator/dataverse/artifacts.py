"""What the Dataverse emulator reads from uploaded content: the assembly identity, a package's plug-in
assemblies (domain-spec §4.1–4.2, §4.6), and whether the content is signed, playing Dataverse's refusal
``0x80040216`` (domain-spec §4.7).

Identities come from the pure readers :func:`ppmi_build.assembly.metadata.read_assembly_identity` and
:func:`ppmi_build.assembly.package.read_package`; an unreadable upload is ``400`` ``0x80040203``.

The signature checks are deliberately independent of ppmi-build's signer and verifier: the emulator only looks
for the presence of a signature, as the bind precondition needs.

* PE/COFF: the Certificate Table is data directory entry 4 of the optional header (Microsoft PE Format,
  "Optional Header Data Directories"; Authenticode_PE.docx). It is signed when that entry is non-empty, points
  inside the file and starts a ``WIN_CERTIFICATE`` whose ``dwLength`` is at least 8 (header size).
* NuGet: a signed package has a ``.signature.p7s`` zip entry (NuGet signed-packages reference, signing-spec).
"""

from __future__ import annotations

import io
import struct
import zipfile
from typing import Any

from ...assembly.metadata import PluginAssembly, read_plugin_assembly
from ...assembly.package import PackageInfo, read_package
from ..core.responses import ApiError

SIGNATURE_ENTRY = ".signature.p7s"


def pe_is_signed(data: bytes) -> bool:
    """True when the PE image ``data`` has a non-empty certificate table holding a WIN_CERTIFICATE."""
    try:
        if data[:2] != b"MZ":
            return False
        (e_lfanew,) = struct.unpack_from("<I", data, 0x3C)
        if data[e_lfanew:e_lfanew + 4] != b"PE\0\0":
            return False
        opt = e_lfanew + 4 + 20  # signature + COFF file header
        (magic,) = struct.unpack_from("<H", data, opt)
        if magic == 0x10B:  # PE32: data directories start at offset 96 of the optional header
            dirs = opt + 96
        elif magic == 0x20B:  # PE32+: offset 112
            dirs = opt + 112
        else:
            return False
        (count,) = struct.unpack_from("<I", data, dirs - 4)  # NumberOfRvaAndSizes
        if count < 5:
            return False
        offset, size = struct.unpack_from("<II", data, dirs + 4 * 8)  # entry 4: file offset, not an RVA
        if size < 8 or offset == 0 or offset + size > len(data):
            return False
        (length,) = struct.unpack_from("<I", data, offset)
        return 8 <= length <= size
    except struct.error:
        return False


def nupkg_is_signed(data: bytes) -> bool:
    """True when the package zip ``data`` has a ``.signature.p7s`` entry."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            return SIGNATURE_ENTRY in zf.namelist()
    except zipfile.BadZipFile:
        return False


def read_dll(data: bytes) -> PluginAssembly:
    """The identity (name, version, culture, public key token, IPlugin types) of an uploaded assembly.

    Raises:
        ApiError: 400 ``0x80040203`` when ``data`` is not a readable .NET assembly.
    """
    try:
        return read_plugin_assembly(data, label="content")
    except Exception as e:
        raise ApiError(400, "0x80040203", f"The content is not a valid .NET assembly: {e}") from None


def read_nupkg(data: bytes) -> tuple[PackageInfo, dict[str, bytes]]:
    """A package's assemblies: its :class:`PackageInfo` and each assembly entry's bytes by entry name.

    Raises:
        ApiError: 400 ``0x80040203`` when ``data`` is not a readable NuGet package (the message names the entry).
    """
    try:
        info = read_package(data, label="content")
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            blobs = {n: zf.read(n) for n in info.assemblies}
    except Exception as e:
        raise ApiError(400, "0x80040203", f"The content is not a valid NuGet package: {e}") from None
    return info, blobs


def _pe_signature(data: bytes) -> bytes | None:
    """The PKCS#7 ``bCertificate`` of the first WIN_CERTIFICATE of a PE image, or None."""
    if not pe_is_signed(data):
        return None
    (e_lfanew,) = struct.unpack_from("<I", data, 0x3C)
    opt = e_lfanew + 24
    (magic,) = struct.unpack_from("<H", data, opt)
    dirs = opt + (96 if magic == 0x10B else 112)
    offset, _size = struct.unpack_from("<II", data, dirs + 4 * 8)
    (length,) = struct.unpack_from("<I", data, offset)
    return data[offset + 8: offset + length]


def signer_of(data: bytes, kind: str) -> Any:
    """The signer certificate (``cryptography`` ``x509.Certificate``) of uploaded content: the Authenticode signer
    of a ``pluginassembly``'s PE image or the NuGet author signer of a ``pluginpackage``'s .nupkg (``kind`` is the
    table's logical name) — the certificate the platform builds the FIC subject from (domain-spec §5).

    The one place the emulator reaches the signing code's signer extraction: the CMS signer lookup
    :func:`ppmi_build.signing.cms.find_signer_certificate` (RFC 5652 §5.3 ``sid``); a change of that path is a
    change of this import only. (``ppmi_build.signing.api.signer_certificate`` would also pull in the timestamp
    client, and the emulator never imports HTTP clients.)

    Raises:
        ValueError: the content is not signed or its signature cannot be read.
    """
    from asn1crypto import cms as acms

    from ...signing.cms import find_signer_certificate

    if kind == "pluginpackage":
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as zf:
                blob: bytes | None = zf.read(SIGNATURE_ENTRY) if SIGNATURE_ENTRY in zf.namelist() else None
        except zipfile.BadZipFile:
            blob = None
    else:
        blob = _pe_signature(data)
    if not blob:
        raise ValueError("the content has no signature")
    try:
        info = acms.ContentInfo.load(blob)
        signed = info["content"]
        cert = find_signer_certificate(signed, signed["signer_infos"][0])
    except Exception as e:  # noqa: BLE001 - any parse failure is "cannot read the signature"
        raise ValueError(f"the signature cannot be read: {e}") from None
    if cert is None:
        raise ValueError("the signature does not carry its signer certificate")
    return cert


def has_user_string(data: bytes, text: str) -> bool:
    """True when the assembly image ``data`` holds ``text`` as a .NET user string (UTF-16LE in the ``#US`` heap,
    ECMA-335 §II.24.2.4): how the emulator sees that the plug-in code contains the ``validate`` probe handler."""
    return text.encode("utf-16-le") in data
