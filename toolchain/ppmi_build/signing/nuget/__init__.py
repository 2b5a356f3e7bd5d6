"""NuGet package author signatures (signing-spec §2): :mod:`.archive` (zip records and the segments of the
unsigned package; §2.5), :mod:`.content` (signature content and author attributes; §2.2-§2.3), :mod:`.sign`
and :mod:`.verify` (§2.6-§2.7)."""
