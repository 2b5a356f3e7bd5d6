"""``dotnet nuget sign`` (.NET SDK) as a package back-end (signing-spec §2.8); see :mod:`._nuget_tools`."""

from __future__ import annotations

from ._nuget_tools import find_dotnet as find
from ._nuget_tools import sign_with_dotnet as sign

__all__ = ["find", "sign"]
