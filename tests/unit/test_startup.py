"""Start-up comes from lazy imports only: what a quick command loads, and that nothing patches the interpreter.

Each check runs in a fresh interpreter (this test process has imported everything already).
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

#: libraries that a command pays for only when it uses them
HEAVY = ("cryptography", "asn1crypto", "httpx", "lxml", "dnfile", "pefile", "signify", "jinja2", "azure")


def _fresh(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=120)


def _loaded_after(code: str) -> list[str]:
    """Top-level names of the HEAVY libraries in ``sys.modules`` after running ``code`` in a fresh interpreter."""
    res = _fresh(code + textwrap.dedent(f"""
        import json, sys
        print(json.dumps(sorted({{m.split(".")[0] for m in sys.modules}} & set({list(HEAVY)!r}))), file=sys.__stdout__)
    """))
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout.strip().splitlines()[-1])


def test_import_ppmi_build_is_light():
    assert _loaded_after("import ppmi_build\n") == []


def test_version_and_help_load_no_heavy_library():
    for argv in (["--version"], ["--help"], ["sign", "--help"], ["release", "--help"]):
        code = textwrap.dedent(f"""
            import sys
            from ppmi_build.cli import main
            try:
                main({argv!r}, prog_name="ppmi-build")
            except SystemExit as e:
                assert e.code in (0, None), e.code
        """)
        assert _loaded_after(code) == [], argv


def test_version_output_in_a_real_process():
    res = subprocess.run([sys.executable, "-m", "ppmi_build", "--version"], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("ppmi-build, version ") and res.stderr == ""


def test_commands_leave_the_interpreter_as_they_found_it():
    """Loading every command module changes neither ``re.compile`` nor any ``sys.modules`` entry of the
    standard library (no stand-in modules), nor the thread switch interval."""
    res = _fresh("""
        import importlib, re, sys
        compile_before, interval = re.compile, sys.getswitchinterval()
        import email.utils
        email_utils = email.utils
        from ppmi_build.cli import COMMANDS
        for target in COMMANDS.values():
            importlib.import_module("ppmi_build.cli." + target.split(":")[0])
        import ppmi_build.signing.api, ppmi_build.assembly.metadata  # noqa: F401
        print(re.compile is compile_before, sys.modules["email.utils"] is email_utils,
              sys.getswitchinterval() == interval)
    """)
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["True", "True", "True"]


def test_cli_logging_is_undone_after_each_command():
    """The command line's logging set-up (stderr handler, dnfile filter) lasts one command; the root and
    ``ppmi_build`` loggers are left as they were (an in-process caller keeps its own logging)."""
    res = _fresh("""
        import logging
        from click.testing import CliRunner
        from ppmi_build.cli import main
        root, ours = logging.getLogger(), logging.getLogger("ppmi_build")
        before = (list(root.handlers), root.level, list(ours.handlers), ours.level, ours.propagate)
        r = CliRunner().invoke(main, ["-v", "snk", "--help"])
        assert r.exit_code == 0, r.output
        print(before == (list(root.handlers), root.level, list(ours.handlers), ours.level, ours.propagate))
    """)
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["True"]
