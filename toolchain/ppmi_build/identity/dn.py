"""PLACEHOLDER: .NET X500DistinguishedName rendering; the identity helper replaces this."""

from cryptography import x509


def dotnet_name(name: x509.Name) -> str:
    return ", ".join(
        " + ".join(f"{a.rfc4514_attribute_name}={a.value}" for a in rdn) for rdn in reversed(list(name.rdns))
    )
