"""NuGet's package rules applied by ``sign``, ``verify`` and ``register`` alike (one validator,
``ppmi_build.assembly.nupkg_rules``), through the CLI.

Each hostile package is made here with ``zipfile`` and raw bytes (PKWARE APPNOTE §4.3): an entry name that leaves
the extraction folder (NuGet ``PackageReaderBase.ValidatePackageEntry``), no nuspec (``NuGetLogCode.NU5037`` "The
package is missing the required nuspec file"), two nuspecs (``MultipleNuspecFiles``), a nuspec that is not XML, a
"billion laughs" nuspec (a DTD with nested entities), a 50 MB nuspec, junk before the zip data, and an end record
that says the central directory is 1 byte long. Expected: ``sign`` one ``error:`` line naming the file, exit 2,
the file byte for byte as it was and no temporary file left; ``verify`` INVALID / NOT SIGNED with a NuGet code,
exit 1; ``register`` one line, exit 2, nothing uploaded.
"""

# ruff: noqa: F811  (pytest fixtures imported from tests.emulator_fixture)
from __future__ import annotations

import struct
import time
import zipfile
from pathlib import Path

import pytest

from tests.emulator_fixture import emulator, emulator_env  # noqa: F401
from tests.nupkg_builder import build_nupkg

NUSPEC = ('<?xml version="1.0" encoding="utf-8"?>\n<package xmlns="http://schemas.microsoft.com/packaging/2013/05/'
          'nuspec.xsd"><metadata><id>Contoso.Plugins</id><version>1.0.0</version><authors>Contoso</authors>'
          '<description>d</description></metadata></package>')
BILLION_LAUGHS = ('<?xml version="1.0"?>\n<!DOCTYPE package [<!ENTITY a "lol">'
                  + "".join(f'<!ENTITY {chr(98 + i)} "{("&" + chr(97 + i) + ";") * 10}">' for i in range(9))
                  + ']>\n<package><metadata><id>&j;</id><version>1.0.0</version></metadata></package>')


def _zip(path: Path, entries: list[tuple[str, bytes]]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in entries:
            zi = zipfile.ZipInfo(name, date_time=(2026, 1, 2, 3, 4, 6))
            zi.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(zi, data)
    return path


def _with_nuspec(*extra: tuple[str, bytes]) -> list[tuple[str, bytes]]:
    return [("Contoso.Plugins.nuspec", NUSPEC.encode()), *extra]


def _eocd_directory_one_byte(path: Path) -> Path:
    build_nupkg(path)
    b = bytearray(path.read_bytes())
    e = b.rfind(b"PK\x05\x06")
    struct.pack_into("<I", b, e + 12, 1)  # APPNOTE §4.3.16: size of the central directory
    path.write_bytes(bytes(b))
    return path


def _junk_before(path: Path) -> Path:
    build_nupkg(path)
    path.write_bytes(b"<html>502 Bad Gateway</html>\n" + path.read_bytes())
    return path


#: name -> (builder, text the one line must contain, NuGet code verify shows)
CASES = {
    "zip-slip": (lambda p: _zip(p, _with_nuspec(("../../evil.dll", b"MZ"))), "leaves the extraction folder",
                 "NU5000"),
    "zip-slip-escaped": (lambda p: _zip(p, _with_nuspec(("lib/%2e%2e/%2e%2e/evil.dll", b"MZ"))),
                         "leaves the extraction folder", "NU5000"),
    "absolute": (lambda p: _zip(p, _with_nuspec(("/etc/evil.dll", b"MZ"))), "is an absolute path", "NU5000"),
    "backslash-rooted": (lambda p: _zip(p, _with_nuspec(("\\evil.dll", b"MZ"))), "rooted with a backslash",
                         "NU5000"),
    "drive-rooted": (lambda p: _zip(p, _with_nuspec(("C:evil.dll", b"MZ"))), "rooted at a drive letter", "NU5000"),
    "no-nuspec": (lambda p: _zip(p, [("lib/net462/a.txt", b"x")]), "missing the required nuspec", "NU5037"),
    "two-nuspecs": (lambda p: _zip(p, _with_nuspec(("Other.nuspec", NUSPEC.encode()))), "2 .nuspec files",
                    "NU5000"),
    "malformed-nuspec": (lambda p: _zip(p, [("Contoso.Plugins.nuspec", b"<package><metadata>")]),
                         "is not valid XML", "NU5000"),
    "billion-laughs": (lambda p: _zip(p, [("Contoso.Plugins.nuspec", BILLION_LAUGHS.encode())]), "<!DOCTYPE>",
                       "NU5000"),
    "50MB-nuspec": (lambda p: _zip(p, [("Contoso.Plugins.nuspec", NUSPEC.encode() + b" " * (50 << 20))]),
                    "over the 1048576 byte nuspec limit", "NU5000"),
    "junk-before-zip": (_junk_before, "before its zip data", "NU3008"),
    "eocd-directory-1-byte": (_eocd_directory_one_byte, "central directory is 1 byte(s) long", "NU3008"),
}


def _one_error_line(r) -> str:
    assert "Traceback" not in r.stderr, r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    return lines[0]


@pytest.fixture(scope="module")
def hostile(tmp_path_factory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("hostile-packages")
    return {name: build(out / f"{name}.nupkg") for name, (build, _, _) in CASES.items()}


@pytest.mark.parametrize("case", list(CASES))
def test_sign_refuses_in_one_line_and_leaves_the_file(cli, hostile, pki, password_env, tmp_path, case):
    pkg = tmp_path / "Contoso.Plugins.1.0.0.nupkg"
    pkg.write_bytes(hostile[case].read_bytes())
    before = pkg.read_bytes()
    t0 = time.monotonic()
    r = cli("sign", pkg, "--cert", pki.leaf.pfx)
    assert time.monotonic() - t0 < 5
    line = _one_error_line(r)
    assert r.exit_code == 2, r.stderr
    assert str(pkg) in line and CASES[case][1] in line, line
    assert pkg.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [pkg.name]  # no temporary file left


@pytest.mark.parametrize("case", list(CASES))
def test_verify_reports_the_package_invalid_with_a_nuget_code(cli, hostile, case):
    r = cli("verify", hostile[case])
    assert "Traceback" not in r.stderr
    assert r.exit_code == 1, (r.stdout, r.stderr)
    assert ("INVALID" in r.stdout or "NOT SIGNED" in r.stdout), r.stdout
    assert f"{CASES[case][2]}: " in r.stdout and CASES[case][1] in r.stdout, r.stdout


def test_verify_json_lists_the_rule_with_its_code(cli, hostile):
    import json

    r = cli("verify", hostile["no-nuspec"], "--json")
    doc = json.loads(r.stdout)
    result = doc[0] if isinstance(doc, list) else doc
    assert result["valid"] is False
    assert any(p.startswith("NU5037: ") for p in result["problems"]), result


@pytest.fixture
def project(tmp_path, monkeypatch, emulator_env):
    (tmp_path / "ppmi.toml").write_text(
        "[plugin]\nkind = \"package\"\n\n[identity]\ntenant_id = \"7f2c1900-9fd4-4b89-91d3-79a649996f0a\"\n"
        "application_id = \"9f3d07ca-381e-43fc-8bef-76dd03b460d6\"\nversion = 2\n")
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.parametrize("case", ["zip-slip", "billion-laughs", "junk-before-zip", "eocd-directory-1-byte"])
def test_register_refuses_what_sign_refuses(cli, hostile, project, emulator, case):
    pkg = project / "Contoso.Plugins.1.0.0.nupkg"
    pkg.write_bytes(hostile[case].read_bytes())
    mark = len(emulator.requests())
    r = cli("register", "--env", "emu", pkg)
    line = _one_error_line(r)
    assert r.exit_code == 2 and CASES[case][1] in line, r.stderr
    assert not [q for q in emulator.requests()[mark:] if q["method"] != "GET"]  # nothing uploaded
