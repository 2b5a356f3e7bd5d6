"""Pure readers of .NET assemblies and plug-in packages: what Dataverse reads from an artifact.

- :mod:`ppmi_build.assembly.metadata`: assembly identity (name, version, culture, public key token) and the
  ``IPlugin`` types of an assembly, from its ECMA-335 metadata (ECMA-335 6th ed. §II.22; domain-spec §4.1-4.2).
- :mod:`ppmi_build.assembly.package`: the nuspec id/version and the assemblies of a plug-in package
  (``.nupkg``), read with zip-bomb, encryption and duplicate-entry limits (domain-spec §4.2, §4.6).

Nothing here writes, signs or talks to a service: ``project`` (build), ``signing`` (NuGet package contents),
``dataverse`` (registration) and the emulator all read artifacts through this layer, which sits below them.
"""
