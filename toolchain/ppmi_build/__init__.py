"""ppmi-build: build, sign, register and bind Power Platform (Dataverse) plug-ins that use
managed identity, from any OS.

Public library entry points live in the sub-packages: :mod:`ppmi_build.signing`
(Authenticode and NuGet signing and verification), :mod:`ppmi_build.identity` (.NET DN
strings, FIC issuer/subject/audience, certificates, strong-name keys),
:mod:`ppmi_build.project` (scaffold and dotnet build), :mod:`ppmi_build.dataverse`
(Web API client, registration, managed identity, emulator) and :mod:`ppmi_build.pipeline`
(release, rotate, upgrade). The CLI in :mod:`ppmi_build.cli` is a thin layer over them.
"""

__version__ = "0.1.0"
