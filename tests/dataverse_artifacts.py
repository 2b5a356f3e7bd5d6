"""Session fixture ``dv``: real plug-in artifacts for the Dataverse tests, made by independent tools.

* ``Microsoft.Xrm.Sdk.dll``: a stub defining ``Microsoft.Xrm.Sdk.IPlugin`` (compiled with Mono ``mcs``), so the
  plug-in classes implement the real interface name Dataverse looks for.
* Standalone assemblies ``Contoso.Plugins`` 1.0.0.0 and 1.0.1.0: strong-named with a key from Mono ``sn -k``,
  Authenticode-signed with ``osslsigncode`` (test PKI leaf certificate); ``asm_v1_unsigned`` is the same build
  without the Authenticode signature.
* Packages ``Contoso.Pkg`` (``.nupkg`` written with ``zipfile`` by ``tests.nupkg_builder``) holding
  ``Contoso.Pkg.Plugins.dll`` (IPlugin classes) and ``Contoso.Pkg.Common.dll`` (no plug-in); "signed" variants
  carry a ``.signature.p7s`` entry made by ``openssl cms -sign`` (a real CMS SignedData; the emulator only looks for
  the entry, as its bind check needs).

Use: ``from tests.dataverse_artifacts import dv  # noqa: F401``.
"""

from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import compile_assembly, run_tool

SDK_CS = """
using System;
namespace Microsoft.Xrm.Sdk { public interface IPlugin { void Execute(IServiceProvider serviceProvider); } }
"""

PLUGIN_CS = """
using System;
using System.Reflection;
[assembly: AssemblyVersion("{version}")]
namespace {ns}
{{
    public abstract class PluginBase : Microsoft.Xrm.Sdk.IPlugin
    {{
        public void Execute(IServiceProvider serviceProvider) {{ Run(serviceProvider); }}
        protected abstract void Run(IServiceProvider serviceProvider);
    }}
    public sealed class AccountPlugin : PluginBase {{ protected override void Run(IServiceProvider s) {{ }} }}
    public sealed class ContactPlugin : Microsoft.Xrm.Sdk.IPlugin
    {{
        public void Execute(IServiceProvider serviceProvider) {{ }}
        public static string Build() {{ return "{version}"; }}
    }}
    public static class Helper {{ public static int Answer() {{ return 42; }} }}
}}
"""

COMMON_CS = """
using System.Reflection;
[assembly: AssemblyVersion("2.0.0.0")]
namespace Contoso.Pkg.Common
{
    public static class Text { public static string Upper(string s) { return s.ToUpperInvariant(); } }
}
"""

#: plug-in type names defined in PLUGIN_CS (concrete classes implementing IPlugin)
PLUGIN_TYPES = ("AccountPlugin", "ContactPlugin")


@dataclass
class DvArtifacts:
    dir: Path
    sdk: Path
    asm_v1_unsigned: Path
    asm_v1: Path
    asm_v2: Path
    pkg_v1_unsigned: Path
    pkg_v1: Path
    pkg_v1_changed: Path  # same package id/version, different plug-in build (1.0.1.0)
    pkg_v2: Path  # package version 1.0.1, plug-in build 1.0.1.0
    token_v1: str  # public key token by `sn -T` (independent of ppmi-build)

    def copy(self, src: Path, dst_dir: Path, name: str | None = None) -> Path:
        dst = dst_dir / (name or src.name)
        dst.write_bytes(src.read_bytes())
        return dst


def osslsign(pki, src: Path, out: Path, pfx_password: str) -> Path:
    """Authenticode-sign ``src`` into ``out`` with osslsigncode and the test leaf certificate."""
    passfile = out.parent / "pass.txt"
    passfile.write_text(pfx_password)
    os.chmod(passfile, 0o600)
    res = run_tool("osslsigncode", "sign", "-pkcs12", pki.leaf.pfx, "-readpass", passfile, "-h", "sha256",
                   "-in", src, "-out", out)
    passfile.unlink()
    assert res.returncode == 0, res.stdout + res.stderr
    return out


def add_p7s(pki, src: Path, out: Path) -> Path:
    """Copy the package and append a ``.signature.p7s`` (stored) entry holding an ``openssl cms`` signature."""
    data = src.read_bytes()
    sig = out.with_suffix(".p7s")
    res = run_tool("openssl", "cms", "-sign", "-binary", "-nodetach", "-outform", "DER", "-in", src,
                   "-signer", pki.leaf.pem, "-inkey", pki.leaf.keyfile, "-out", sig)
    assert res.returncode == 0, res.stderr
    out.write_bytes(data)
    with zipfile.ZipFile(out, "a") as z:
        zi = zipfile.ZipInfo(".signature.p7s", date_time=(2026, 1, 2, 3, 4, 6))
        zi.compress_type = zipfile.ZIP_STORED
        z.writestr(zi, sig.read_bytes())
    sig.unlink()
    return out


_BUILT: dict[int, DvArtifacts] = {}


@pytest.fixture(scope="session")
def dv(tmp_path_factory, pki, pfx_password, snk_file) -> DvArtifacts:
    # Each test module imports this fixture, which gives it one fixture definition per module: build once per
    # session anyway.
    key = id(tmp_path_factory)
    if key not in _BUILT:
        _BUILT[key] = _build(tmp_path_factory, pki, pfx_password, snk_file)
    return _BUILT[key]


def _build(tmp_path_factory, pki, pfx_password, snk_file) -> DvArtifacts:
    from tests.nupkg_builder import build_nupkg

    d = tmp_path_factory.mktemp("dv")
    sdk = compile_assembly(d / "Microsoft.Xrm.Sdk.dll", source=SDK_CS)
    v1 = d / "v1"
    v2 = d / "v2"
    p1 = d / "p1"
    p2 = d / "p2"
    for f in (v1, v2, p1, p2):
        f.mkdir()
    a1 = compile_assembly(v1 / "Contoso.Plugins.dll", keyfile=snk_file, references=[sdk],
                          source=PLUGIN_CS.format(ns="Contoso.Plugins", version="1.0.0.0"))
    a2 = compile_assembly(v2 / "Contoso.Plugins.dll", keyfile=snk_file, references=[sdk],
                          source=PLUGIN_CS.format(ns="Contoso.Plugins", version="1.0.1.0"))
    signed1 = osslsign(pki, a1, d / "Contoso.Plugins.dll", pfx_password)
    signed2 = osslsign(pki, a2, v2 / "Contoso.Plugins.signed.dll", pfx_password)
    (v2 / "Contoso.Plugins.dll").unlink()
    signed2 = signed2.rename(v2 / "Contoso.Plugins.dll")

    common = compile_assembly(d / "Contoso.Pkg.Common.dll", source=COMMON_CS)
    pp1 = compile_assembly(p1 / "Contoso.Pkg.Plugins.dll", references=[sdk],
                           source=PLUGIN_CS.format(ns="Contoso.Pkg.Plugins", version="1.0.0.0"))
    pp2 = compile_assembly(p2 / "Contoso.Pkg.Plugins.dll", references=[sdk],
                           source=PLUGIN_CS.format(ns="Contoso.Pkg.Plugins", version="1.0.1.0"))
    (d / "unsigned").mkdir()
    pkg_unsigned = build_nupkg(d / "unsigned" / "Contoso.Pkg.1.0.0.nupkg", package_id="Contoso.Pkg",
                               version="1.0.0", dlls=[pp1, common])
    pkg_v1 = add_p7s(pki, pkg_unsigned, d / "Contoso.Pkg.1.0.0.nupkg")
    changed_raw = build_nupkg(p2 / "raw.nupkg", package_id="Contoso.Pkg", version="1.0.0", dlls=[pp2, common])
    pkg_changed = add_p7s(pki, changed_raw, p2 / "Contoso.Pkg.1.0.0.nupkg")
    v2_raw = build_nupkg(p2 / "raw2.nupkg", package_id="Contoso.Pkg", version="1.0.1", dlls=[pp2, common])
    pkg_v2 = add_p7s(pki, v2_raw, p2 / "Contoso.Pkg.1.0.1.nupkg")

    res = run_tool("sn", "-T", a1)
    token = res.stdout.strip().splitlines()[-1].split(":")[-1].strip().lower()
    assert len(token) == 16, res.stdout
    return DvArtifacts(d, sdk, a1, signed1, signed2, pkg_unsigned, pkg_v1, pkg_changed, pkg_v2, token)
