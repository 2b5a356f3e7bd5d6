"""Damaged .NET metadata (ECMA-335 §II.24 streams and tables): every reader of assembly metadata — ``snk token``,
``register`` (:func:`ppmi_build.dataverse.registration.load_artifact`), ``build``/emulator through
:mod:`ppmi_build.assembly.metadata` — refuses it with one ``PEFormatError`` line naming the file, exit 2, and
prints nothing else (under the command line, none of dnfile's per-table WARNING lines reach stderr).

Inputs: ``tests/data/corrupt-metadata-{1,2,3}.dll`` are fuzz inputs that crashed dnfile (a Mono ``mcs``
strong-named library with a few bytes changed; 3-3.5 KB each): #1 and #3 made dnfile raise ``AttributeError:
MajorVersion`` / ``Extends_CodedIndex``, #2 loaded with an empty assembly name after dnfile failed to parse the
``#~`` stream. Plus a fixed-seed fuzz of an assembly compiled here with ``mcs``.
"""

from __future__ import annotations

import json
import logging
import random
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from ppmi_build.assembly.metadata import (
    MetadataCorrupt,
    plugin_types,
    read_assembly_identity,
    read_plugin_assemblies,
    read_plugin_assembly,
)
from ppmi_build.errors import PEFormatError, PpmiError

DATA = Path(__file__).parent.parent / "data"
CORRUPT = sorted(DATA.glob("corrupt-metadata-*.dll"))


def test_inputs_are_present_and_small():
    assert len(CORRUPT) == 3 and all(p.stat().st_size < 8192 for p in CORRUPT)


@pytest.mark.parametrize("path", CORRUPT, ids=lambda p: p.name)
def test_every_reader_refuses_with_one_line(path):
    for read in (read_assembly_identity, read_plugin_assembly):
        with pytest.raises(MetadataCorrupt) as e:
            read(path)
        assert e.value.message.startswith(f"{path}: .NET metadata is corrupt ("), e.value.message
        assert e.value.exit_code == 2 and "\n" not in e.value.message
    with pytest.raises(PEFormatError):
        read_plugin_assemblies({"lib/net462/x.dll": path.read_bytes()}, labels={"lib/net462/x.dll": "p.nupkg!x"})


@pytest.mark.parametrize("path", CORRUPT, ids=lambda p: p.name)
def test_register_loads_refuse_it(path, copy_of):
    from ppmi_build.dataverse.registration import load_artifact

    art = copy_of(path, "Contoso.Plugins.dll")
    with pytest.raises(PEFormatError, match=r"^Contoso\.Plugins\.dll: \.NET metadata is corrupt \("):
        load_artifact(art, kind="assembly")


@pytest.mark.parametrize("path", CORRUPT, ids=lambda p: p.name)
def test_snk_token_exit_2_json(cli, path, copy_of):
    art = copy_of(path)
    before = art.read_bytes()
    r = cli("snk", "token", art, "--json")
    assert r.exit_code == 2, (r.stdout, r.stderr)
    doc = json.loads(r.stdout)
    assert doc["error"]["message"].startswith(f"{art}: .NET metadata is corrupt (")
    assert doc["error"]["exit_code"] == 2 and "Traceback" not in r.stdout + r.stderr
    assert art.read_bytes() == before


def test_stderr_is_one_line_in_a_real_process(tmp_path):
    """No WARNING flood from dnfile: the whole stderr of ``snk token`` is the one error line."""
    for path in CORRUPT:
        r = subprocess.run([sys.executable, "-m", "ppmi_build", "snk", "token", str(path)], capture_output=True,
                           text=True, timeout=60)
        assert r.returncode == 2, r.stderr
        assert r.stdout == "" and r.stderr.count("\n") == 1, r.stderr
        assert r.stderr.startswith(f"error: {path}: .NET metadata is corrupt (")


@pytest.mark.slow
def test_fuzzed_assembly_never_escapes_as_a_crash(strong_named_dll, capsys):
    """Fixed-seed mutations of a mcs-compiled strong-named library: every outcome is a parsed identity or one
    PpmiError line; under the command line's logging set-up nothing dnfile logs reaches the console (the
    library leaves logging to the application)."""
    from ppmi_build.cli._logging import configure_logging

    undo = configure_logging(0)
    try:
        refused = _fuzz(strong_named_dll.read_bytes())
    finally:
        undo()
    assert refused >= 10  # the fuzz does reach damaged metadata
    assert capsys.readouterr().err == ""


def _fuzz(seed: bytes) -> int:
    """Read 300 fixed-seed mutations of ``seed``; returns how many were refused as MetadataCorrupt."""
    rnd = random.Random(12)
    refused = 0
    for _ in range(300):
        d = bytearray(seed)
        for _ in range(rnd.randint(1, 6)):
            off = rnd.randrange(len(d))
            kind = rnd.randrange(3)
            if kind == 0:
                d[off] = rnd.randrange(256)
            elif kind == 1:
                d[off:off + 4] = struct.pack("<I", rnd.choice([0, 1, 0xFFFF, 0xFFFFFFFF, 0x7FFFFFFF, len(d)]))
            else:
                d[off:off + 2] = struct.pack("<H", rnd.choice([0, 0xFFFF, 0x8000, 1]))
        data = bytes(d)
        for read, args in ((read_assembly_identity, (data,)), (plugin_types, (data,)),
                           (read_plugin_assemblies, ({"a.dll": data, "b.dll": seed},))):
            try:
                read(*args)
            except PpmiError as e:
                assert "\n" not in e.message and e.exit_code == 2
                refused += isinstance(e, MetadataCorrupt)
    return refused


def test_cli_logging_drops_dnfile_records_only():
    """dnfile reports through its ``dnfile.*`` loggers and, in ``dnfile.stream``, through the root logger
    (``logging.warning(err_msg)`` in dnfile 0.18 ``stream.py``): the command line drops both, and nothing else."""
    from ppmi_build.cli._logging import WithoutDnfile

    keep = WithoutDnfile().filter

    def record(name: str, pathname: str) -> logging.LogRecord:
        return logging.LogRecord(name, logging.WARNING, pathname, 1, "message", None, None)

    assert not keep(record("dnfile.stream", "/venv/lib/site-packages/dnfile/stream.py"))
    assert not keep(record("dnfile", "/venv/lib/site-packages/dnfile/__init__.py"))
    assert not keep(record("root", "/venv/lib/site-packages/dnfile/stream.py"))
    assert not keep(record("root", r"C:\venv\Lib\site-packages\dnfile\stream.py"))
    assert keep(record("root", "/venv/lib/site-packages/httpx/_client.py"))
    assert keep(record("ppmi_build.dataverse", "/venv/lib/site-packages/ppmi_build/dataverse/client.py"))
    assert keep(record("azure.identity", "/venv/lib/site-packages/dnfile_extras/x.py"))
