"""Read and edit MSBuild project files (``.csproj``) without disturbing the user's formatting.

Parsing and every read go through lxml. Edits are *spliced* into the original text: lxml
checks the document and locates the property to change, and only the bytes of that property's
value (or one inserted line) change, so comments, blank lines, attribute quoting, ``<X />``
versus ``<X></X>``, the XML declaration, a UTF-8 BOM and CRLF line ends all survive. After
every edit the new text is parsed again with lxml and the value read back.

MSBuild semantics used here (https://learn.microsoft.com/visualstudio/msbuild/msbuild-properties,
https://learn.microsoft.com/dotnet/core/project-sdk/msbuild-props):

* properties live in ``<PropertyGroup>`` elements; a later definition overrides an earlier one;
* ``$(Name)`` references are expanded from properties defined earlier;
* definitions under a ``Condition`` are not evaluated here (reported by :meth:`Project.conditional`);
* SDK defaults: ``AssemblyName`` = project file name; ``PackageId`` = ``AssemblyName``;
  ``Version`` = ``VersionPrefix[-VersionSuffix]`` or ``1.0.0``; ``PackageVersion`` = ``Version``;
  ``AssemblyVersion``/``FileVersion`` = the numeric part of ``Version``, padded to 4 parts.

Dataverse note (domain-spec §4.1): changing the *major or minor* part of ``AssemblyVersion``
gives the plug-in assembly a new identity ("Plug-in assembly fullnames must be unique"), so
:func:`bump_version` bumps the build part by default.
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape

from lxml import etree

from ..errors import ProjectError
from ..fileio import atomic_write, read_input

_PROP_REF = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")
_VERSION = re.compile(r"^\d+(\.\d+){1,3}$")

#: ``Microsoft.PowerApps.MSBuild.Plugin`` marks a plug-in *package* project (domain-spec §3.2, §4.6).
PACKAGE_MARKER = "Microsoft.PowerApps.MSBuild.Plugin"


@dataclass
class _Span:
    """Offsets of one element in the text: start tag [s0, s1), end tag [e0, e1) (e0 == e1 == s1 if self-closing)."""

    s0: int
    s1: int
    e0: int
    e1: int
    self_closing: bool
    name: str


_MARKUP = [
    ("comment", re.compile(r"<!--.*?-->", re.S)),
    ("cdata", re.compile(r"<!\[CDATA\[.*?\]\]>", re.S)),
    ("pi", re.compile(r"<\?.*?\?>", re.S)),
    ("doctype", re.compile(r"<!DOCTYPE[^>\[]*>", re.S)),
    ("end", re.compile(r"</\s*([^\s>]+)\s*>")),
    ("start", re.compile(r"<([^\s/>!?]+)(?:\s+[^\s=/>]+\s*=\s*(?:\"[^\"]*\"|'[^']*'))*\s*(/?)>")),
]


def _tokenize(text: str) -> list[_Span]:
    """Element spans in document order (the order of ``root.iter()``)."""
    spans: list[_Span] = []
    stack: list[_Span] = []
    pos = 0
    while True:
        lt = text.find("<", pos)
        if lt < 0:
            break
        for kind, rx in _MARKUP:  # noqa: B007 - `kind` is used after the loop
            m = rx.match(text, lt)
            if m:
                break
        else:
            raise ProjectError(f"unexpected markup at offset {lt}")
        if kind == "start":
            name = m.group(1)
            sc = m.group(2) == "/"
            span = _Span(lt, m.end(), m.end(), m.end(), sc, name)
            spans.append(span)
            if not sc:
                stack.append(span)
        elif kind == "end":
            if not stack or stack[-1].name != m.group(1):
                raise ProjectError(f"unbalanced end tag </{m.group(1)}> at offset {lt}")
            span = stack.pop()
            span.e0, span.e1 = lt, m.end()
        pos = m.end()
    if stack:
        raise ProjectError(f"element <{stack[-1].name}> is not closed")
    return spans


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1] if isinstance(tag, str) else ""


class Project:
    """An MSBuild project file held as text, parsed with lxml.

    Create with :meth:`load` (from a file) or :meth:`from_text`. Read with :meth:`properties`,
    :meth:`get`, :meth:`evaluated`, :meth:`package_references`; edit with :meth:`set_property`
    and :meth:`remove_property`; write with :meth:`save` (temp file + rename).
    """

    def __init__(self, text: str, *, path: Path | None = None, encoding: str = "utf-8", bom: bool = False):
        self.path = path
        self.encoding = encoding
        self.bom = bom
        self._set_text(text)

    # -- loading -------------------------------------------------------------------------

    @classmethod
    def load(cls, path: Path | str) -> Project:
        """Read and parse ``path``.

        Raises:
            InputFileError: missing or unreadable file.
            ProjectError: not well-formed XML, or the root element is not ``<Project>``.
        """
        path = Path(path)
        raw = read_input(path, missing="pass the plug-in project (.csproj)")
        encoding, bom = "utf-8", False
        for mark, enc in ((codecs.BOM_UTF8, "utf-8"), (codecs.BOM_UTF16_LE, "utf-16-le"),
                          (codecs.BOM_UTF16_BE, "utf-16-be")):
            if raw.startswith(mark):
                encoding, bom, raw = enc, True, raw[len(mark):]
                break
        try:
            text = raw.decode(encoding)
        except UnicodeDecodeError as e:
            raise ProjectError(f"{path} is not {encoding} text ({e.reason} at byte {e.start}); "
                               "save it as UTF-8") from None
        return cls(text, path=path, encoding=encoding, bom=bom)

    @classmethod
    def from_text(cls, text: str) -> Project:
        return cls(text)

    def _where(self) -> str:
        return str(self.path) if self.path else "the project file"

    def _set_text(self, text: str) -> None:
        body = re.sub(r"^\s*<\?xml[^>]*\?>", "", text, count=1)  # lxml refuses str input with an encoding decl
        parser = etree.XMLParser(remove_blank_text=False, remove_comments=False, resolve_entities=False,
                                 no_network=True, huge_tree=False)
        try:
            root = etree.fromstring(body, parser)
        except etree.XMLSyntaxError as e:
            raise ProjectError(f"{self._where()} is not well-formed XML ({e}); fix the file or restore it "
                               "from source control") from None
        if _local(root.tag) != "Project":
            raise ProjectError(f"{self._where()} has root element <{_local(root.tag)}>, not <Project>; "
                               "pass an MSBuild project (.csproj)")
        offset = len(text) - len(body)
        try:
            spans = _tokenize(body)
        except ProjectError as e:
            raise ProjectError(f"{self._where()}: {e.message}") from None
        elements = [el for el in root.iter() if isinstance(el.tag, str)]
        if len(spans) != len(elements) or any(s.name.rsplit(":", 1)[-1] != _local(e.tag)
                                              for s, e in zip(spans, elements, strict=False)):
            raise ProjectError(f"{self._where()} uses XML constructs ppmi-build cannot edit safely "
                               "(entities or DTD); edit it by hand")
        for s in spans:
            s.s0 += offset
            s.s1 += offset
            s.e0 += offset
            s.e1 += offset
        self.text = text
        self.root = root
        self._spans = dict(zip(elements, spans, strict=True))

    # -- reading -------------------------------------------------------------------------

    @property
    def newline(self) -> str:
        return "\r\n" if "\r\n" in self.text else "\n"

    @property
    def sdk_style(self) -> bool:
        """True for SDK-style projects (``<Project Sdk="…">`` or an ``<Sdk>`` child)."""
        return bool(self.root.get("Sdk")) or any(_local(c.tag) == "Sdk" for c in self.root if isinstance(c.tag, str))

    @property
    def name(self) -> str:
        """``MSBuildProjectName``: the file name without extension."""
        return self.path.stem if self.path else "Project"

    def _groups(self) -> list:
        return [g for g in self.root if isinstance(g.tag, str) and _local(g.tag) == "PropertyGroup"]

    def _definitions(self, name: str) -> list:
        """Unconditional elements defining ``name``, in document order."""
        out = []
        for g in self._groups():
            if g.get("Condition") is not None:
                continue
            for el in g:
                if isinstance(el.tag, str) and _local(el.tag) == name and el.get("Condition") is None:
                    out.append(el)
        return out

    def conditional(self) -> list[tuple[str, str, str]]:
        """``(name, raw value, condition)`` for property definitions under a Condition (not evaluated)."""
        out = []
        for g in self._groups():
            for el in g:
                if not isinstance(el.tag, str):
                    continue
                cond = el.get("Condition") or g.get("Condition")
                if cond is not None:
                    out.append((_local(el.tag), _text(el), cond))
        return out

    def raw(self, name: str) -> str | None:
        """The last unconditional raw value of property ``name`` (no ``$(…)`` expansion), or None."""
        defs = self._definitions(name)
        return _text(defs[-1]) if defs else None

    def properties(self, *, builtins: dict[str, str] | None = None) -> dict[str, str]:
        """Unconditional properties in evaluation order, later definitions winning, ``$(X)`` expanded.

        Args:
            builtins: values for reserved properties referenced before definition
                (default: ``MSBuildProjectName``, ``MSBuildProjectDirectory``).
        """
        props: dict[str, str] = {"MSBuildProjectName": self.name}
        if self.path:
            props["MSBuildProjectDirectory"] = str(self.path.parent.resolve())
        props.update(builtins or {})
        seen = dict(props)
        out: dict[str, str] = {}
        for g in self._groups():
            if g.get("Condition") is not None:
                continue
            for el in g:
                if not isinstance(el.tag, str) or el.get("Condition") is not None:
                    continue
                value = _PROP_REF.sub(lambda m: seen.get(m.group(1), ""), _text(el))
                seen[_local(el.tag)] = value
                out[_local(el.tag)] = value
        return out

    def get(self, name: str, default: str | None = None) -> str | None:
        """Expanded value of property ``name`` (see :meth:`properties`), or ``default``."""
        return self.properties().get(name, default)

    def evaluated(self, configuration: str = "Release") -> dict[str, str]:
        """Properties with the .NET SDK defaults the build outputs depend on filled in.

        Keys always present: ``Configuration``, ``AssemblyName``, ``RootNamespace``, ``PackageId``,
        ``Version``, ``PackageVersion``, ``AssemblyVersion``, ``FileVersion``, ``TargetFramework``
        (first of ``TargetFrameworks`` when only that is set; '' when neither).
        """
        p = self.properties(builtins={"Configuration": configuration})
        p.setdefault("Configuration", configuration)
        p["Configuration"] = configuration
        p.setdefault("AssemblyName", self.name)
        p.setdefault("RootNamespace", p["AssemblyName"])
        p.setdefault("PackageId", p["AssemblyName"])
        if "Version" not in p:
            prefix = p.get("VersionPrefix") or "1.0.0"
            p["Version"] = f"{prefix}-{p['VersionSuffix']}" if p.get("VersionSuffix") else prefix
        p.setdefault("PackageVersion", p["Version"])
        numeric = re.match(r"\d+(\.\d+){0,3}", p["Version"])
        four = ".".join((numeric.group(0).split(".") + ["0", "0", "0"])[:4]) if numeric else "1.0.0.0"
        p.setdefault("AssemblyVersion", four)
        p.setdefault("FileVersion", four)
        if not p.get("TargetFramework"):
            tfs = [t.strip() for t in p.get("TargetFrameworks", "").split(";") if t.strip()]
            p["TargetFramework"] = tfs[0] if tfs else ""
        return p

    def package_references(self) -> dict[str, str | None]:
        """``{Include: Version}`` of every ``<PackageReference>`` (Version attribute or child; None if absent)."""
        out: dict[str, str | None] = {}
        for el in self.root.iter():
            if isinstance(el.tag, str) and _local(el.tag) == "PackageReference" and el.get("Include"):
                version = el.get("Version")
                if version is None:
                    child = next((c for c in el if isinstance(c.tag, str) and _local(c.tag) == "Version"), None)
                    version = _text(child) if child is not None else None
                out[el.get("Include")] = version
        return out

    @property
    def kind(self) -> str:
        """``"package"`` when the project references ``Microsoft.PowerApps.MSBuild.Plugin``, else ``"assembly"``."""
        refs = {k.lower() for k in self.package_references()}
        return "package" if PACKAGE_MARKER.lower() in refs else "assembly"

    # -- editing -------------------------------------------------------------------------

    def _indent_of(self, pos: int) -> str:
        line_start = self.text.rfind("\n", 0, pos) + 1
        prefix = self.text[line_start:pos]
        return prefix if prefix.strip() == "" else ""

    def _indent_unit(self) -> str:
        """The indentation step used in the file (the root's first child's indent), default 2 spaces."""
        for el in self.root:
            if isinstance(el.tag, str):
                ind = self._indent_of(self._spans[el].s0)
                if ind:
                    return ind
        return "  "

    def set_property(self, name: str, value: str) -> bool:
        """Set property ``name`` to the literal ``value``.

        Changes the last unconditional definition in place; when there is none, appends
        ``<name>value</name>`` to the first unconditional ``<PropertyGroup>`` (with the
        indentation of its last property), or adds a new ``<PropertyGroup>`` as the first
        child of ``<Project>``. Returns True when the text changed.

        Raises:
            ProjectError: ``name`` is not a valid property name.
        """
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.-]*", name):
            raise ProjectError(f"{name!r} is not a valid MSBuild property name")
        esc = escape(value)
        defs = self._definitions(name)
        nl = self.newline
        if defs:
            el = defs[-1]
            if _text(el) == value:
                return False
            sp = self._spans[el]
            if sp.self_closing:
                tag = self.text[sp.s0:sp.s1]
                open_tag = re.sub(r"\s*/>$", ">", tag)
                new = self.text[:sp.s0] + open_tag + esc + f"</{sp.name}>" + self.text[sp.s1:]
            else:
                # replace the leading text only (keeps any comment inside the element)
                end = self.text.find("<", sp.s1)
                end = sp.e0 if end < 0 or end > sp.e0 else end
                new = self.text[:sp.s1] + esc + self.text[end:]
        else:
            groups = [g for g in self._groups() if g.get("Condition") is None]
            line = f"<{name}>{esc}</{name}>"
            if groups:
                g = groups[0]
                gs = self._spans[g]
                children = [c for c in g if isinstance(c.tag, str)]
                if children:
                    last = self._spans[children[-1]]
                    indent = self._indent_of(last.s0)
                    at = last.e1
                    new = self.text[:at] + nl + indent + line + self.text[at:]
                elif gs.self_closing:
                    gind = self._indent_of(gs.s0)
                    open_tag = re.sub(r"\s*/>$", ">", self.text[gs.s0:gs.s1])
                    block = f"{open_tag}{nl}{gind}{self._indent_unit()}{line}{nl}{gind}</{gs.name}>"
                    new = self.text[:gs.s0] + block + self.text[gs.s1:]
                else:
                    gind = self._indent_of(gs.s0)
                    new = (self.text[:gs.s1] + nl + gind + self._indent_unit() + line
                           + self.text[gs.s1:gs.e0].rstrip(" \t\r\n") + nl + gind + self.text[gs.e0:])
            else:
                rs = self._spans[self.root]
                unit = self._indent_unit()
                block = f"{nl}{unit}<PropertyGroup>{nl}{unit}{unit}{line}{nl}{unit}</PropertyGroup>"
                if rs.self_closing:
                    open_tag = re.sub(r"\s*/>$", ">", self.text[rs.s0:rs.s1])
                    new = self.text[:rs.s0] + open_tag + block + nl + f"</{rs.name}>" + self.text[rs.s1:]
                else:
                    new = self.text[:rs.s1] + block + self.text[rs.s1:]
        self._set_text(new)
        if self.raw(name) != value:  # pragma: no cover - self-check of the splice
            raise ProjectError(f"internal: setting {name} in {self._where()} did not take effect")
        return True

    def remove_property(self, name: str) -> bool:
        """Remove every unconditional definition of ``name`` (with its line when it stands alone)."""
        defs = self._definitions(name)
        if not defs:
            return False
        text = self.text
        for el in reversed(defs):
            sp = self._spans[el]
            start, end = sp.s0, sp.e1
            line_start = text.rfind("\n", 0, start) + 1
            line_end = text.find("\n", end)
            line_end = len(text) if line_end < 0 else line_end + 1
            if text[line_start:start].strip() == "" and text[end:line_end].strip() == "":
                start, end = line_start, line_end
            text = text[:start] + text[end:]
        self._set_text(text)
        return True

    # -- writing -------------------------------------------------------------------------

    def to_bytes(self) -> bytes:
        data = self.text.encode(self.encoding)
        if self.bom:
            data = {"utf-8": codecs.BOM_UTF8, "utf-16-le": codecs.BOM_UTF16_LE,
                    "utf-16-be": codecs.BOM_UTF16_BE}[self.encoding] + data
        return data

    def save(self, path: Path | str | None = None) -> Path:
        """Write the project (same encoding, BOM and line ends) through a temp file and rename."""
        target = Path(path) if path else self.path
        if target is None:
            raise ProjectError("no path to save the project to")
        atomic_write(target, self.to_bytes())
        return target


def _text(el) -> str:
    return (el.text or "").strip() if el is not None else ""


# -- convenience functions used by the CLI, release and the scaffold ------------------------

def read_properties(path: Path | str, configuration: str = "Release") -> dict[str, str]:
    """:meth:`Project.evaluated` of the project at ``path``."""
    return Project.load(path).evaluated(configuration)


_PARTS = {"major": 0, "minor": 1, "build": 2, "patch": 2, "revision": 3}


def bump(version: str, part: str = "build") -> str:
    """Increment one part of a dotted numeric version and zero the parts after it.

    ``bump("1.0.0.0", "build") == "1.0.1.0"``; ``bump("1.2.3", "minor") == "1.3.0"``; a missing
    part is added (``bump("1.0", "revision") == "1.0.0.1"``).

    Raises:
        ProjectError: ``version`` is not 2–4 dot-separated numbers, or ``part`` is unknown.
    """
    if part not in _PARTS:
        raise ProjectError(f"unknown version part {part!r}; use major, minor, build (patch) or revision")
    if not _VERSION.match(version):
        raise ProjectError(f"version {version!r} is not 2-4 dot-separated numbers; set a literal version first")
    nums = [int(x) for x in version.split(".")]
    i = _PARTS[part]
    while len(nums) <= i:
        nums.append(0)
    nums[i] += 1
    for j in range(i + 1, len(nums)):
        nums[j] = 0
    if any(n > 65534 for n in nums):
        raise ProjectError(f"version part would exceed 65534 (the .NET limit): {'.'.join(map(str, nums))}")
    return ".".join(map(str, nums))


VERSION_PROPERTIES = ("Version", "AssemblyVersion", "FileVersion", "PackageVersion")


def bump_version(path: Path | str, part: str = "build", *, dry_run: bool = False) -> dict[str, tuple[str, str]]:
    """Bump every literal version property of the project at ``path`` and save it.

    Literal values of ``Version``, ``AssemblyVersion``, ``FileVersion`` and ``PackageVersion`` are
    bumped; values built from other properties (``$(FileVersion)``) follow on their own. When
    none is literal, ``Version`` is added (SDK default ``1.0.0`` bumped).

    Returns:
        ``{property: (old, new)}``.
    Raises:
        ProjectError: a literal version is not numeric (e.g. ``1.0.0-beta``) or the file is not XML.
    """
    return _change_versions(path, lambda _prop, old: bump(old, part),
                            lambda old: bump(old if _VERSION.match(old) else "1.0.0", part), save=not dry_run)


def _change_versions(path: Path | str, new_value, new_default, *, save: bool = True) -> dict[str, tuple[str, str]]:
    """Give every literal version property (:data:`VERSION_PROPERTIES`; not ``$(...)`` expressions) the value
    ``new_value(property, old)``; when none is literal, set ``Version`` to ``new_default(evaluated Version)``.
    Saves unless ``save`` is false. Returns ``{property: (old, new)}``."""
    proj = Project.load(path)
    changes: dict[str, tuple[str, str]] = {}
    for prop in VERSION_PROPERTIES:
        raw = proj.raw(prop)
        if raw is None or "$(" in raw:
            continue
        changes[prop] = (raw, new_value(prop, raw))
    if not changes:
        old = proj.evaluated()["Version"]
        changes["Version"] = (old, new_default(old))
    for prop, (_old, new) in changes.items():
        proj.set_property(prop, new)
    if save:
        proj.save()
    return changes


def set_version(path: Path | str, version: str) -> dict[str, tuple[str, str]]:
    """Set the project's version: ``AssemblyVersion``/``FileVersion`` get 4 parts, ``Version``/
    ``PackageVersion`` the value as given; only properties that are literal today (or ``Version``
    when none is). Returns ``{property: (old, new)}``.
    """
    if not _VERSION.match(version):
        raise ProjectError(f"version {version!r} is not 2-4 dot-separated numbers (e.g. 1.2.0.0)")
    four = ".".join((version.split(".") + ["0", "0"])[:4])
    return _change_versions(path, lambda prop, _old: four if prop in ("AssemblyVersion", "FileVersion") else version,
                            lambda _old: version)


def set_signing(path: Path | str, key_file: str | None) -> Project:
    """Turn strong-name signing on with ``key_file`` (relative to the project folder), or off (None).

    On: ``SignAssembly=true`` and ``AssemblyOriginatorKeyFile=key_file``. Off: ``SignAssembly=false``
    (the key file property is left as it is). Saves the project and returns it.
    """
    proj = Project.load(path)
    if key_file is None:
        proj.set_property("SignAssembly", "false")
    else:
        proj.set_property("SignAssembly", "true")
        proj.set_property("AssemblyOriginatorKeyFile", key_file)
    proj.save()
    return proj
