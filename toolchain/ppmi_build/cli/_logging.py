"""Logging of the ``ppmi-build`` command line (configured per command; a library module never does this)."""

from __future__ import annotations

import logging
from collections.abc import Callable

import click


class _StderrHandler(logging.Handler):
    """Writes log records to the current stderr through click (so also under test runners)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            click.echo(self.format(record), err=True)
        except Exception:  # pragma: no cover - a closed stderr must not fail the command
            self.handleError(record)


class WithoutDnfile(logging.Filter):
    """Drops the records dnfile writes while parsing .NET metadata.

    dnfile reports every damaged table or stream it meets (hundreds of lines for one damaged
    assembly), through its ``dnfile.*`` loggers and, in ``dnfile.stream`` 0.18, through the root
    logger (``logging.warning``). What matters reaches the user as one ``PEFormatError`` line
    (:mod:`ppmi_build.assembly.metadata`)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name == "dnfile" or record.name.startswith("dnfile."):
            return False
        parts = record.pathname.replace("\\", "/").split("/")
        return "dnfile" not in parts[:-1]


#: loggers azure-identity, azure-core and MSAL write per-credential attempts to (INFO/WARNING; MSAL logs
#: tracebacks at ERROR, e.g. "Token response is not in json format"): silent without ``-v``, since the failure
#: itself reaches the user as one error line (:mod:`ppmi_build.http.tokens`)
AZURE_LOGGERS = ("azure.identity", "azure.core", "msal", "msal_extensions")
#: the level they get without ``-v``: above CRITICAL
QUIET_LEVEL = logging.CRITICAL + 1


def configure_logging(verbose: int) -> Callable[[], None]:
    """The command line's logging for one command; returns the function that undoes it.

    The root logger gets one stderr handler for the run: WARNING and above from any library, as
    Python's last-resort handler would print them (message only), except dnfile's parse reports
    (:class:`WithoutDnfile`), and nothing from :data:`AZURE_LOGGERS` (``DefaultAzureCredential`` would print one
    WARNING block per credential it tried). With ``-v`` the ``ppmi_build`` loggers (e.g. ``ppmi_build.dataverse``:
    one DEBUG line per request, retries at INFO) are printed too, as ``<logger>: <message>``.
    Log lines never carry tokens or passwords (headers and bodies are not logged). Undoing it
    restores the previous handlers and levels, so an in-process caller running commands one after
    another gets exactly what each asked for.
    """
    root = logging.getLogger()
    ours = logging.getLogger("ppmi_build")
    saved = (ours.level, ours.propagate)
    added: list[tuple[logging.Logger, logging.Handler]] = []
    azure_levels = {name: logging.getLogger(name).level for name in AZURE_LOGGERS}

    def attach(logger: logging.Logger, level: int, fmt: str) -> None:
        handler = _StderrHandler(level)
        handler.setFormatter(logging.Formatter(fmt))
        handler.addFilter(WithoutDnfile())
        logger.addHandler(handler)
        added.append((logger, handler))

    attach(root, logging.WARNING, "%(message)s")
    if not verbose:
        for name in AZURE_LOGGERS:
            logging.getLogger(name).setLevel(QUIET_LEVEL)
    if verbose:
        attach(ours, logging.NOTSET, "%(name)s: %(message)s")
        ours.setLevel(logging.DEBUG)
        ours.propagate = False  # printed once, by the handler above

    def undo() -> None:
        for logger, handler in added:
            logger.removeHandler(handler)
        ours.setLevel(saved[0])
        ours.propagate = saved[1]
        for name, level in azure_levels.items():
            logging.getLogger(name).setLevel(level)

    return undo
