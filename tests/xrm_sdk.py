"""Test helpers shared by test_scaffold.py and test_build.py: the Dataverse SDK test surface
(``tests/xrm_sdk_surface.cs`` compiled once per session with Mono ``mcs``, strong-named with a
Mono ``sn -k`` key) and the stand-in ``dotnet`` (``tests/fake_dotnet/dotnet``)."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import make_snk, mcs_compile

__all__ = ["FAKE_DOTNET", "SURFACE_SOURCE", "mcs_compile", "surface_dll"]

HERE = Path(__file__).resolve().parent
SURFACE_SOURCE = HERE / "xrm_sdk_surface.cs"
FAKE_DOTNET = HERE / "fake_dotnet" / "dotnet"

_cache: dict[str, Path] = {}


def surface_dll(tmp_path_factory) -> Path:
    """``Microsoft.Xrm.Sdk.dll`` built from :data:`SURFACE_SOURCE` (compiled once per session)."""
    if "dll" not in _cache:
        folder = tmp_path_factory.mktemp("xrm-sdk")
        key = make_snk(folder / "xrm-test.snk")
        out = folder / "Microsoft.Xrm.Sdk.dll"
        res = mcs_compile(out, [SURFACE_SOURCE], keyfile=key)
        if res.returncode != 0:
            raise RuntimeError(f"mcs failed on {SURFACE_SOURCE}: {res.stdout}{res.stderr}")
        _cache["dll"] = out
    return _cache["dll"]
