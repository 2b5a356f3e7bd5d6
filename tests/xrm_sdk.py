"""Test helpers shared by test_scaffold.py and test_build.py: the Dataverse SDK test surface
(``tests/xrm_sdk_surface.cs`` compiled once per session with Mono ``mcs``, strong-named with a
Mono ``sn -k`` key) and the stand-in ``dotnet`` (``tests/fake_dotnet/dotnet``)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.conftest import require_tool

HERE = Path(__file__).resolve().parent
SURFACE_SOURCE = HERE / "xrm_sdk_surface.cs"
FAKE_DOTNET = HERE / "fake_dotnet" / "dotnet"

_cache: dict[str, Path] = {}


def surface_dll(tmp_path_factory) -> Path:
    """``Microsoft.Xrm.Sdk.dll`` built from :data:`SURFACE_SOURCE` (compiled once per session)."""
    if "dll" not in _cache:
        mcs = require_tool("mcs")
        sn = require_tool("sn")
        folder = tmp_path_factory.mktemp("xrm-sdk")
        key = folder / "xrm-test.snk"
        subprocess.run([sn, "-q", "-k", "2048", str(key)], check=True, capture_output=True)
        out = folder / "Microsoft.Xrm.Sdk.dll"
        res = subprocess.run([mcs, "-nologo", "-target:library", "-langversion:experimental", f"-keyfile:{key}",
                              f"-out:{out}", str(SURFACE_SOURCE)], capture_output=True, text=True)
        if res.returncode != 0:
            raise RuntimeError(f"mcs failed on {SURFACE_SOURCE}: {res.stdout}{res.stderr}")
        _cache["dll"] = out
    return _cache["dll"]


def mcs_compile(out: Path, sources: list[Path], *, references: list[Path] = (), keyfile: Path | None = None,
                target: str = "library", langversion: str = "experimental") -> subprocess.CompletedProcess:
    """Run mcs; returns the CompletedProcess (caller asserts on returncode/output)."""
    mcs = require_tool("mcs")
    cmd = [mcs, "-nologo", f"-target:{target}", f"-langversion:{langversion}", f"-out:{out}"]
    if keyfile:
        cmd.append(f"-keyfile:{keyfile}")
    cmd += [f"-r:{r}" for r in references]
    cmd += [str(s) for s in sources]
    return subprocess.run(cmd, capture_output=True, text=True)
