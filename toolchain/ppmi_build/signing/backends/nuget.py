"""``nuget sign`` (NuGet CLI) as a package back-end (signing-spec §2.8); see :mod:`._nuget_tools`."""

from __future__ import annotations

from ._nuget_tools import find_nuget as find
from ._nuget_tools import sign_with_nuget as sign

__all__ = ["find", "sign"]
