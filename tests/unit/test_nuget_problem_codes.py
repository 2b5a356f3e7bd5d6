"""NuGet package verification gives each problem NuGet's own code where the check that found it runs.

Expected codes are NuGet's ``NuGetLogCode`` (NuGet.Client ``src/NuGet.Core/NuGet.Common/Errors/NuGetLogCode.cs``;
"Errors and warnings" reference): NU3004 "the package is not signed", NU3008 "the package integrity check failed",
NU3018 "chain building failed for primary signature", NU3019 "the timestamp integrity check failed", NU3028
"chain building failed for timestamp". The printed text stays NuGet's ``"NU3018: …"`` and the JSON keeps
``problems`` as strings beside ``problem_codes``.
"""

from __future__ import annotations

import shutil
import struct
import zipfile
from pathlib import Path

import pytest
from asn1crypto import cms as acms

import ppmi_build
from ppmi_build.identity.certificates import new_dev_certificate
from ppmi_build.signing.keys import LocalKey
from ppmi_build.signing.nuget.content import SIGNATURE_TIME_STAMP_TOKEN_OID
from ppmi_build.signing.timestamp import inspect_timestamp
from tests.nupkg_builder import build_nupkg


@pytest.fixture(scope="module")
def dev_key():
    return new_dev_certificate("CN=Contoso Dev", days=30)


@pytest.fixture()
def package(tmp_path) -> Path:
    dll = tmp_path / "Contoso.Demo.Plugins.dll"
    with ppmi_build.resources.data().joinpath(dll.name).open("rb") as src, open(dll, "wb") as dst:
        shutil.copyfileobj(src, dst)
    return build_nupkg(tmp_path / "Contoso.Plugins.1.0.0.nupkg", dlls=[dll])


def _sign(package: Path, key, cert, timestamp_urls=()) -> Path:
    ppmi_build.Signer(LocalKey(private_key=key, chain=[cert])).sign(
        package, options=ppmi_build.SignOptions(timestamp_urls=list(timestamp_urls)))
    return package


def _codes(result: ppmi_build.VerifyResult) -> list[str]:
    assert all(isinstance(p, ppmi_build.Problem) for p in result.problems), result.problems
    assert result.kind is ppmi_build.ArtifactKind.PACKAGE
    doc = result.to_json()
    assert doc["problems"] == [f"{p.code}: {p.message}" for p in result.problems]  # NuGet's "NU3018: …"
    assert doc["problem_codes"] == [p.code for p in result.problems]
    return [p.code for p in result.problems]


def test_unsigned_package_is_nu3004(package):
    result = ppmi_build.Verifier([], use_system_roots=False).verify(package)
    assert _codes(result) == ["NU3004"] and not result.signed


def test_untrusted_root_is_nu3018(package, dev_key):
    key, cert = dev_key
    _sign(package, key, cert)
    other_key, other = new_dev_certificate("CN=Fabrikam Dev", days=30)
    result = ppmi_build.Verifier([other], use_system_roots=False).verify(package)
    assert not result.valid and _codes(result) == ["NU3018"]
    assert result.problems[0].message.startswith("chain building failed for the primary signature")
    assert ppmi_build.Verifier([cert], use_system_roots=False).verify(package).problems == []


def test_tampered_package_is_nu3008(package, dev_key):
    key, cert = dev_key
    _sign(package, key, cert)
    data = bytearray(package.read_bytes())
    with zipfile.ZipFile(package) as zf:
        first = zf.infolist()[0]
    name_len, extra_len = struct.unpack_from("<HH", data, first.header_offset + 26)
    data[first.header_offset + 30 + name_len + extra_len + 1] ^= 0x01  # inside the first entry's data
    package.write_bytes(bytes(data))
    result = ppmi_build.Verifier([cert], use_system_roots=False).verify(package)
    assert not result.valid and _codes(result) == ["NU3008"]


def test_untrusted_timestamp_is_nu3028(package, dev_key, tsa):
    """Signer trusted, the TSA's root not: only the timestamp's chain fails (the check inside
    ``inspect_timestamp``, which reports it with NuGet's code)."""
    key, cert = dev_key
    _sign(package, key, cert, [tsa.url])
    result = ppmi_build.Verifier([cert], use_system_roots=False).verify(package)
    assert not result.valid and _codes(result) == ["NU3028"]
    assert result.problems[0].message.startswith("timestamp: the TSA certificate is not trusted")


def test_timestamp_over_another_signature_is_nu3019(package, dev_key, tsa, pki):
    key, cert = dev_key
    _sign(package, key, cert, [tsa.url])
    from ppmi_build.signing.nuget.archive import SIGNATURE_NAME

    with zipfile.ZipFile(package) as zf:
        p7s = zf.read(SIGNATURE_NAME.decode())
    si = acms.ContentInfo.load(p7s)["content"]["signer_infos"][0]
    [attr] = [a for a in si["unsigned_attrs"] if a["type"].dotted == SIGNATURE_TIME_STAMP_TOKEN_OID]
    token = acms.ContentInfo.load(attr["values"][0].dump())
    assert inspect_timestamp(token, si["signature"].native, [pki.root.cert]).problems == []
    [problem] = inspect_timestamp(token, b"another signature value", [pki.root.cert]).problems
    assert problem.code == "NU3019" and "imprint does not match" in problem.message
