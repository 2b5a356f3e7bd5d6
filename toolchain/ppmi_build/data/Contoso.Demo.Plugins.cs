// Source of the demo assembly that `ppmi-build demo` signs (Contoso.Demo.Plugins.dll, shipped as package data).
// Built with Mono: mcs -target:library -keyfile:<throwaway.snk> -out:Contoso.Demo.Plugins.dll Contoso.Demo.Plugins.cs
// (the throwaway strong-name key is not kept). It is a real .NET Framework class library, strong-named like a
// standalone Dataverse plug-in assembly must be; it does not reference the Dataverse SDK so it can ship alone.
using System;
using System.Collections.Generic;
using System.Reflection;

[assembly: AssemblyTitle("Contoso.Demo.Plugins")]
[assembly: AssemblyVersion("1.0.0.0")]
[assembly: AssemblyFileVersion("1.0.0.0")]

namespace Contoso.Demo.Plugins
{
    /// <summary>Scopes the demo plug-in would request through IManagedIdentityService.AcquireToken.</summary>
    public static class ManagedIdentityScopes
    {
        public static IEnumerable<string> Default()
        {
            return new[] { "https://vault.azure.net/.default" };
        }
    }
}
