"""Pytest fixtures for the local Dataverse (+ Entra) emulator.

Import the fixtures into a test module::

    from tests.emulator_fixture import emulator  # noqa: F401  (pytest finds it by name)

    def test_x(emulator):
        emulator.url      # http://127.0.0.1:PORT  -> [environments.NAME] url / graph_url / arm_url
        emulator.token    # "emulator-token"       -> PPMI_ACCESS_TOKEN
        emulator.add_fault(method="POST", path_contains="pluginpackages", status=503, times=2)
        emulator.rows("pluginassembly")  # SQLite rows, for assertions
        emulator.requests()              # [{"method", "path", "status", "query", "time", "fault"}]

Every test gets its own server on a free loopback port with an in-memory database (start-up takes a few
milliseconds), so tests never see each other's rows or faults.
"""

from __future__ import annotations

import pytest


@pytest.fixture
def emulator():
    """A fresh, running :class:`ppmi_build.emulator.Emulator` (stopped after the test)."""
    from ppmi_build.emulator import start

    emu = start()
    try:
        yield emu
    finally:
        emu.stop()


@pytest.fixture
def emulator_env(emulator, monkeypatch):
    """The emulator plus environment variables pointing ppmi-build at it: ``PPMI_ACCESS_TOKEN`` (its token) and
    environment ``emu`` (``PPMI_ENV_EMU_URL``, ``PPMI_ENV_EMU_ENVIRONMENT_ID``, ``PPMI_ENV_EMU_SOLUTION``), and
    tiny retry back-off (``PPMI_HTTP_BACKOFF=0.01``) so fault tests stay fast."""
    monkeypatch.setenv("PPMI_ACCESS_TOKEN", emulator.token)
    monkeypatch.setenv("PPMI_ENV_EMU_URL", emulator.url)
    monkeypatch.setenv("PPMI_ENV_EMU_ENVIRONMENT_ID", "7efcc31a-c410-e20e-9b95-dd448cedf653")
    monkeypatch.setenv("PPMI_ENV_EMU_SOLUTION", "ContosoPlugins")
    monkeypatch.setenv("PPMI_HTTP_BACKOFF", "0.01")
    return emulator
