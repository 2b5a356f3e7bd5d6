"""Authenticode signatures of PE files (signing-spec §1): :mod:`.pe` (PE/COFF layout, authentihash,
checksum, certificate table; §1.2-§1.3, §1.10), :mod:`.structures` (SpcIndirectDataContent, SpcSpOpusInfo,
signed attributes; §1.4-§1.6), :mod:`.sign` and :mod:`.verify` (§1.7, §3.3)."""
