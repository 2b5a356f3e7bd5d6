"""Access to the data that ships inside the wheel: ``templates/`` and ``certs/`` (repository
top level, installed as ``ppmi_build/templates`` and ``ppmi_build/certs``) and
``ppmi_build/data`` (the demo assembly).

Loaded with :mod:`importlib.resources`; when running from a source checkout (editable
install) the repository's top-level folders are used instead.
"""

from __future__ import annotations

from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path

_REPO_ROOT = Path(__file__).resolve().parents[2]


def _folder(name: str) -> Traversable:
    packaged = resources.files("ppmi_build") / name
    if packaged.is_dir():
        return packaged
    source = _REPO_ROOT / name
    if source.is_dir():
        return source
    raise FileNotFoundError(f"ppmi-build data folder {name!r} is missing from the installation; reinstall ppmi-build")


def templates() -> Traversable:
    """The jinja2 templates folder (``templates/``)."""
    return _folder("templates")


def certs() -> Traversable:
    """The certificate profiles folder (``certs/``)."""
    return _folder("certs")


def data() -> Traversable:
    """Package data (``ppmi_build/data``): the demo assembly."""
    return resources.files("ppmi_build") / "data"
