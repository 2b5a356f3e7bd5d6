"""Shared fixtures: test PKI, loopback TSA, external tools, Mono-compiled assemblies, CLI runner.

External tools (osslsigncode, openssl, mcs, sn, chktrust, unzip) are required through
:func:`require_tool`: on a developer machine without the tool the test is skipped with a
reason; when the ``CI`` environment variable is set, a missing tool fails the test.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # so `tests.*` helpers import

from tests.pki import PFX_PASSWORD, Pki, make_pki  # noqa: E402

IN_CI = bool(os.environ.get("CI"))


def require_tool(name: str) -> str:
    """Path of executable ``name``; skip (locally) or fail (CI) when it is missing."""
    path = shutil.which(name)
    if path is None:
        msg = f"{name} is not installed (apt-get install -y mono-devel osslsigncode openssl unzip)"
        if IN_CI:
            pytest.fail(f"CI is set and {msg}")
        pytest.skip(msg)
    return path


def run_tool(*args: str | os.PathLike, check: bool = False, env: dict | None = None, input: bytes | None = None,
             timeout: float = 120) -> subprocess.CompletedProcess:
    """Run an external verifier; returns CompletedProcess with text stdout/stderr."""
    require_tool(str(args[0]))
    return subprocess.run([str(a) for a in args], capture_output=True, text=input is None, check=check,
                          env=env, input=input, timeout=timeout)


@pytest.fixture(scope="session")
def pki(tmp_path_factory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="session")
def pfx_password() -> str:
    return PFX_PASSWORD


@pytest.fixture
def password_env(monkeypatch) -> str:
    """Sets PPMI_PFX_PASSWORD to the test PFX password; returns the variable name."""
    monkeypatch.setenv("PPMI_PFX_PASSWORD", PFX_PASSWORD)
    return "PPMI_PFX_PASSWORD"


@pytest.fixture(scope="session")
def tsa(pki, tmp_path_factory):
    """Loopback RFC 3161 TSA (`openssl ts -reply`). ``tsa.url``; ``tsa.url + 'fail'`` answers 500."""
    require_tool("openssl")
    from tests.tsa import TsaServer

    server = TsaServer(pki, tmp_path_factory.mktemp("tsa"))
    yield server
    server.close()


PLUGIN_CS = """
using System;
using System.Reflection;
[assembly: AssemblyVersion("{version}")]
[assembly: AssemblyCulture("")]
namespace {ns}
{{
    public interface IPluginLike {{ void Execute(IServiceProvider serviceProvider); }}
    public sealed class SamplePlugin : IPluginLike
    {{
        public void Execute(IServiceProvider serviceProvider)
        {{
            if (serviceProvider == null) throw new ArgumentNullException("serviceProvider");
        }}
        public static string Describe() {{ return "{ns} {version}"; }}
    }}
}}
"""


def mcs_compile(out: Path, sources: list[Path], *, references: list[Path] = (), keyfile: Path | None = None,
                target: str = "library", langversion: str = "experimental",
                platform: str | None = None) -> subprocess.CompletedProcess:
    """Run Mono ``mcs``; returns the CompletedProcess (caller asserts on returncode/output)."""
    mcs = require_tool("mcs")
    cmd = [mcs, "-nologo", f"-target:{target}", f"-langversion:{langversion}", f"-out:{out}"]
    if keyfile:
        cmd.append(f"-keyfile:{keyfile}")
    if platform:
        cmd.append(f"-platform:{platform}")
    cmd += [f"-r:{r}" for r in references]
    cmd += [str(s) for s in sources]
    return subprocess.run(cmd, capture_output=True, text=True)


def compile_assembly(out: Path, *, ns: str = "Contoso.Plugins", version: str = "1.0.0.0",
                     keyfile: Path | None = None, platform: str | None = None, source: str | None = None,
                     references: list[Path] | None = None) -> Path:
    """Compile a small library with Mono ``mcs`` (``-keyfile`` strong-names it; ``platform='x64'``
    still gives PE32 from mcs; use :func:`tests.pe32plus.make_pe32plus` for PE32+)."""
    src = out.with_suffix(".cs")
    src.write_text(source or PLUGIN_CS.format(ns=ns, version=version))
    res = mcs_compile(out, [src], references=references or [], keyfile=keyfile, platform=platform)
    if res.returncode != 0:
        raise RuntimeError(f"mcs failed: {res.stdout}\n{res.stderr}")
    return out


def make_snk(path: Path) -> Path:
    """A 2048-bit strong-name key pair written by Mono ``sn -k`` (independent of ppmi-build's snk writer)."""
    subprocess.run([require_tool("sn"), "-q", "-k", "2048", str(path)], check=True, capture_output=True)
    return path


@pytest.fixture(scope="session")
def snk_file(tmp_path_factory) -> Path:
    """A strong-name key made by Mono ``sn -k 2048`` (independent of ppmi-build's snk writer)."""
    return make_snk(tmp_path_factory.mktemp("snk") / "mono.snk")


@pytest.fixture(scope="session")
def assembly_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("assemblies")


@pytest.fixture(scope="session")
def plain_dll(assembly_dir) -> Path:
    """An unsigned, not strong-named .NET library (PE32) compiled by mcs. Treat as read-only: copy it."""
    return compile_assembly(assembly_dir / "Contoso.Plain.dll", ns="Contoso.Plain")


@pytest.fixture(scope="session")
def strong_named_dll(assembly_dir, snk_file) -> Path:
    """A strong-named .NET library (mcs -keyfile with a Mono-made key). Treat as read-only: copy it."""
    return compile_assembly(assembly_dir / "Contoso.Strong.dll", ns="Contoso.Strong", keyfile=snk_file)


@pytest.fixture
def copy_of(tmp_path):
    """copy_of(path) -> a fresh copy of ``path`` in this test's tmp folder."""

    def _copy(src: Path, name: str | None = None) -> Path:
        dst = tmp_path / (name or Path(src).name)
        shutil.copyfile(src, dst)
        return dst

    return _copy


@pytest.fixture
def cli(monkeypatch):
    """Run the CLI in-process: ``cli("sign", "x.dll", ...)`` -> click Result (exit_code, stdout, stderr)."""
    from click.testing import CliRunner

    from ppmi_build.cli import main

    def _run(*args: str | os.PathLike, input: str | None = None, env: dict | None = None):
        runner = CliRunner()
        return runner.invoke(main, [str(a) for a in args], input=input, env=env, catch_exceptions=False)

    return _run


_GROUP_MARKERS = {"interop": "interop", "e2e": "e2e"}


def pytest_collection_modifyitems(config, items) -> None:
    """Tests under ``tests/interop`` and ``tests/e2e`` carry that group's marker (``-m "not e2e"`` etc.)."""
    root = Path(__file__).resolve().parent
    for item in items:
        try:
            group = Path(str(item.fspath)).resolve().relative_to(root).parts[0]
        except ValueError:
            continue
        marker = _GROUP_MARKERS.get(group)
        if marker:
            item.add_marker(getattr(pytest.mark, marker))
