"""Configuration: ``ppmi.toml`` + ``PPMI_*`` environment variables + CLI options -> :class:`Settings`.

Precedence (DESIGN.md §4): CLI option > environment variable > ``ppmi.toml`` > default.

``ppmi.toml`` layout::

    [plugin]        kind = "package"|"assembly", project = "src/X.csproj", name = "..."
    [identity]      tenant_id, application_id, version (0|1|2), cloud, managed_identity_id,
                    fic_target ("app"|"uami"), application_object_id, uami_resource_id,
                    graph_url, arm_url
    [signing]       certificate, key (a key URI), password_env, timestamp_urls = [...], backend, digest
    [environments.NAME]  url, environment_id, solution
    [[steps]]       plugin, message, entity, stage, mode, rank, filtering_attributes, configuration, name
                    (one table per sdkmessageprocessingstep; see :class:`StepSettings`)

Environment variables: ``PPMI_TENANT_ID``, ``PPMI_APPLICATION_ID``, ``PPMI_MI_VERSION``,
``PPMI_CLOUD``, ``PPMI_MANAGED_IDENTITY_ID``, ``PPMI_CERT`` (signing certificate path),
``PPMI_TIMESTAMP_URLS`` (space or comma separated; set but empty = no timestamp), ``PPMI_GRAPH_URL``, ``PPMI_ARM_URL``,
``PPMI_FIC_TARGET``, ``PPMI_APPLICATION_OBJECT_ID``, ``PPMI_UAMI_RESOURCE_ID``,
``PPMI_ENV_<NAME>_URL``, ``PPMI_ENV_<NAME>_ENVIRONMENT_ID``, ``PPMI_ENV_<NAME>_SOLUTION``.
Secrets (``PPMI_PFX_PASSWORD``, ``PPMI_PFX_BASE64``, ``PPMI_ACCESS_TOKEN``, ...) are read where
they are used, never stored on :class:`Settings`; :func:`secret_env_names` lists them, for the code that
starts child processes (they never get them).

``ppmi.toml`` is read as UTF-8 (TOML v1.0.0 "A TOML file must be a valid UTF-8 encoded Unicode document"); a
byte-order mark is honoured, so a file saved by Windows PowerShell 5 (``Out-File`` / ``>``: UTF-16 LE with BOM;
``Set-Content -Encoding utf8``: UTF-8 with BOM) reads as well. Every key is checked against the type of its
:class:`Settings` field (string, integer, array of strings); ``timestamp_urls`` also takes one string, read like
``PPMI_TIMESTAMP_URLS`` (URLs separated by spaces or commas). A wrong type is a :class:`ConfigError` naming the
file, the key and the expected type.
"""

from __future__ import annotations

import codecs
import dataclasses
import datetime as _dt
import os
import types
import typing
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ConfigError

CONFIG_NAME = "ppmi.toml"


@dataclass
class PluginSettings:
    kind: str = "assembly"  # "assembly" | "package"
    project: str | None = None  # csproj path relative to the project root
    name: str | None = None


@dataclass
class IdentitySettings:
    tenant_id: str | None = None
    application_id: str | None = None
    version: int = 2
    cloud: str = "public"
    managed_identity_id: str | None = None
    fic_target: str = "app"  # "app" (Graph) | "uami" (ARM)
    application_object_id: str | None = None
    uami_resource_id: str | None = None
    graph_url: str | None = None
    arm_url: str | None = None


@dataclass
class SigningSettings:
    certificate: str | None = None
    #: a key URI (pkcs11:..., keyvault:..., trustedsigning:...; ppmi_build.signing.keys.uri); exclusive with certificate
    key: str | None = None
    password_env: str | None = None
    timestamp_urls: list[str] = field(default_factory=list)
    backend: str = "auto"
    digest: str = "sha256"
    #: more issuing-CA DNs (.NET rendering) a Trusted Signing profile may use (ppmi_build.identity.issuers)
    extra_issuers: list[str] = field(default_factory=list)


@dataclass
class EnvironmentSettings:
    name: str
    url: str | None = None
    environment_id: str | None = None
    solution: str | None = None


#: ``[[steps]] stage`` -> ``sdkmessageprocessingstep.stage`` (10 PreValidation, 20 PreOperation, 40 PostOperation;
#: 30 MainOperation is internal: IPluginExecutionContext.Stage and the sdkmessageprocessingstep stage choices,
#: https://learn.microsoft.com/dotnet/api/microsoft.xrm.sdk.ipluginexecutioncontext.stage)
STEP_STAGES = {"prevalidation": 10, "preoperation": 20, "postoperation": 40}
#: ``[[steps]] mode`` -> ``sdkmessageprocessingstep.mode`` (0 Synchronous, 1 Asynchronous)
STEP_MODES = {"sync": 0, "async": 1}


@dataclass
class StepSettings:
    """One ``[[steps]]`` table: an ``sdkmessageprocessingstep`` ``register`` keeps in Dataverse.

    Attributes:
        plugin: the plug-in type: its full name (``Namespace.Class``) or, when unique, the class name.
        message: the ``sdkmessage`` name, e.g. ``Create``.
        entity: the table logical name (``sdkmessagefilter.primaryobjecttypecode``), or None (``"none"`` or
            omitted) for a step on every table / a message without tables.
        stage: ``prevalidation`` | ``preoperation`` | ``postoperation`` (:data:`STEP_STAGES`).
        mode: ``sync`` | ``async`` (:data:`STEP_MODES`); ``async`` only with ``postoperation`` (Dataverse runs
            asynchronous steps after the operation only: Microsoft Learn "Event framework").
        rank: execution order within the stage (non-negative integer; default 1).
        filtering_attributes: column logical names (array, or one string separated by commas/spaces); the step
            runs only when one of them changes (Update).
        configuration: the unsecure configuration string passed to the plug-in's constructor.
        name: the step name (default ``<plugin>: <message> of <entity>``, the Plugin Registration Tool's form);
            unique among the ``[[steps]]`` tables: ``register`` matches the steps it owns by it.
    """

    plugin: str = ""
    message: str = ""
    entity: str | None = None
    stage: str = "postoperation"
    mode: str = "sync"
    rank: int = 1
    filtering_attributes: list[str] = field(default_factory=list)
    configuration: str | None = None
    name: str | None = None

    @property
    def stage_value(self) -> int:
        return STEP_STAGES[self.stage]

    @property
    def mode_value(self) -> int:
        return STEP_MODES[self.mode]

    @property
    def display_name(self) -> str:
        return self.name or f"{self.plugin}: {self.message} of {self.entity or 'any entity'}"


def _steps(raw: Any, problems: list[str]) -> list[StepSettings]:
    """The ``[[steps]]`` tables, checked (required keys, stage/mode values, async only in post-operation, unique
    names). Each problem, naming the table (``[[steps]] #N``) and the fix, is appended to ``problems``; a step
    with a problem is left out of the result."""
    if not isinstance(raw, list) or not all(isinstance(t, dict) for t in raw):
        problems.append("steps must be an array of tables: write each step as a [[steps]] table")
        return []
    out: list[StepSettings] = []
    seen: dict[str, int] = {}
    for i, table in enumerate(raw, 1):
        where = f"[[steps]] #{i}"
        step = StepSettings()
        own: list[str] = []
        _apply(step, table, "steps", own)
        if own:
            problems.extend(f"{p} (the step #{i} of the file)" for p in own)
            continue
        missing = [key for key in ("plugin", "message") if not getattr(step, key).strip()]
        if missing:
            key = missing[0]
            example = "the plug-in class, e.g. Contoso.Plugins.AccountPlugin" if key == "plugin" else "e.g. Create"
            problems.append(f"{where} has no {key}; add {key} = \"…\" ({example})")
            continue
        if step.entity is not None and step.entity.strip().lower() in ("", "none"):
            step.entity = None
        step.stage = step.stage.strip().lower()
        step.mode = step.mode.strip().lower()
        if step.stage not in STEP_STAGES:
            problems.append(f"{where}: stage = {step.stage!r}; use \"prevalidation\", \"preoperation\" or "
                              "\"postoperation\"")
            continue
        if step.mode not in STEP_MODES:
            problems.append(f"{where}: mode = {step.mode!r}; use \"sync\" or \"async\"")
            continue
        if step.mode == "async" and step.stage != "postoperation":
            problems.append(f"{where}: mode = \"async\" with stage = \"{step.stage}\"; Dataverse runs "
                              "asynchronous steps only in the post-operation stage: use stage = \"postoperation\" "
                              "or mode = \"sync\"")
            continue
        if step.rank < 0:
            problems.append(f"{where}: rank = {step.rank}; use a non-negative integer (1 = first)")
            continue
        name = step.display_name
        if len(name) > 256:  # sdkmessageprocessingstep.name MaxLength
            problems.append(f"{where}: the step name is {len(name)} characters; Dataverse allows 256: set a shorter "
                              "name = \"…\"")
            continue
        if name in seen:
            problems.append(f"{where} has the same name as [[steps]] #{seen[name]} ({name!r}); give each step its "
                              "own name = \"…\"")
            continue
        seen[name] = i
        out.append(step)
    return out


@dataclass
class Settings:
    """Everything a command needs, merged from the three sources. ``root`` is the folder of
    ``ppmi.toml`` (or the current folder when there is none)."""

    root: Path
    config_file: Path | None = None
    plugin: PluginSettings = field(default_factory=PluginSettings)
    identity: IdentitySettings = field(default_factory=IdentitySettings)
    signing: SigningSettings = field(default_factory=SigningSettings)
    environments: dict[str, EnvironmentSettings] = field(default_factory=dict)
    steps: list[StepSettings] = field(default_factory=list)
    #: what the readers of :data:`OTHER_TABLES` returned, by table name
    extra: dict[str, Any] = field(default_factory=dict)

    def environment(self, name: str) -> EnvironmentSettings:
        """The named environment. Raises ConfigError naming the known ones."""
        env = self.environments.get(name)
        if env is None:
            known = ", ".join(sorted(self.environments)) or "none"
            where = self.config_file or (self.root / CONFIG_NAME)
            raise ConfigError(
                f"environment {name!r} is not configured (known: {known}); add [environments.{name}] to {where} "
                f"or set PPMI_ENV_{name.upper()}_URL"
            )
        return env

    def resolve_path(self, value: str | os.PathLike[str]) -> Path:
        p = Path(value).expanduser()
        return p if p.is_absolute() else self.root / p


def find_config(start: Path | None = None) -> Path | None:
    """``ppmi.toml`` in ``start`` (a file or folder) or its parents, or None."""
    start = Path(start or Path.cwd()).resolve()
    if start.is_file():
        return start
    for folder in (start, *start.parents):
        candidate = folder / CONFIG_NAME
        if candidate.is_file():
            return candidate
    return None


#: The tables of ``ppmi.toml``, each read into the :class:`Settings` attribute of the same name: one table per
#: name (``[plugin]``) ...
TABLES: dict[str, type] = {"plugin": PluginSettings, "identity": IdentitySettings, "signing": SigningSettings}
#: ... or named sub-tables (``[environments.NAME]``).
NAMED_TABLES: dict[str, type] = {"environments": EnvironmentSettings}
#: Top-level tables read by code outside this module (name -> reader taking ``(value, section, problems)`` and
#: returning what to store on ``Settings.extra[name]``); a new table adds one entry here.
OTHER_TABLES: dict[str, Callable[[Any, str, list[str]], Any]] = {}
#: Arrays of tables (``[[steps]]``), each read into the :class:`Settings` attribute of the same name.
ARRAY_TABLES: tuple[str, ...] = ("steps",)


def known_tables() -> tuple[str, ...]:
    """Every top-level table name ``ppmi.toml`` may hold."""
    return (*TABLES, *NAMED_TABLES, *OTHER_TABLES, *ARRAY_TABLES)


def _section(data: dict[str, Any], name: str, problems: list[str]) -> dict[str, Any]:
    value = data.get(name, {})
    if not isinstance(value, dict):
        problems.append(f"[{name}] must be a table, not {_toml_type(value)}")
        return {}
    return value


def _read_tables(data: dict[str, Any], s: Settings, problems: list[str]) -> None:
    """Fill ``s`` from the parsed file; every problem (unknown tables with "did you mean", unknown keys, wrong
    types, pasted characters) is appended to ``problems``."""
    from .inputs import did_you_mean

    known = known_tables()
    for name, value in data.items():
        if name in known:
            continue
        hint = did_you_mean(name, known)
        if not hint and isinstance(value, dict):  # [environment.dev]: a table whose sub-table is an environment
            hint = did_you_mean(name, tuple(NAMED_TABLES))
        what = "table" if isinstance(value, dict) else "key"
        problems.append(f"unknown table [{name}]{hint or ' (known tables: ' + ', '.join(known) + ')'}"
                        if what == "table" else
                        f"unknown top-level key {name!r}{hint}; settings belong in a table "
                        f"({', '.join(f'[{k}]' for k in known)})")
    for name in TABLES:
        _apply(getattr(s, name), _section(data, name, problems), name, problems)
    for name, values in _section(data, "environments", problems).items():
        section = f"environments.{name}"
        if not isinstance(values, dict):
            problems.append(f"[{section}] must be a table, not {_toml_type(values)}")
            continue
        e_obj = EnvironmentSettings(name=name)
        _apply(e_obj, values, section, problems)
        s.environments[name] = e_obj
    for name, reader in OTHER_TABLES.items():
        if name in data:
            s.extra[name] = reader(data[name], name, problems)
    if "steps" in data:
        s.steps = _steps(data["steps"], problems)
    problems.extend(_value_problems(s))  # reported with the file's other problems, naming the file


def _raise_problems(path: Path, problems: list[str]) -> None:
    """One ConfigError for all the problems of ``path``: one line for one problem, a list for several."""
    if len(problems) == 1:
        raise ConfigError(f"{path}: {problems[0]}")
    if problems:
        raise ConfigError(f"{path} has {len(problems)} problems:\n  " + "\n  ".join(problems))


def _toml_type(value: Any) -> str:
    """The TOML name of a parsed value's type (TOML v1.0.0 terms), with its article."""
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a float"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, (_dt.datetime, _dt.date, _dt.time)):
        return "a date/time"
    return type(value).__name__  # pragma: no cover - tomllib returns only the types above


def _toml_value(value: Any) -> str:
    """``value`` written the TOML way (strings quoted, booleans lower case), at most 60 characters."""
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, (str, int, float, list, dict)):
        import json  # only for this error message (keeps `ppmi-build sign` start-up short)

        try:
            text = json.dumps(value, ensure_ascii=False)
        except (TypeError, ValueError):  # pragma: no cover - dates inside arrays
            text = repr(value)
    else:
        text = str(value)
    return text if len(text) <= 60 else text[:57] + "..."


def split_urls(text: str) -> list[str]:
    """URLs separated by spaces or commas (``PPMI_TIMESTAMP_URLS``, ``timestamp_urls = "…"``)."""
    return text.replace(",", " ").split()


def _coerce(value: Any, tp: Any) -> tuple[bool, Any]:
    """``(True, value)`` when ``value`` (as tomllib parsed it) fits the field type ``tp`` (``str``, ``int``,
    ``list[str]`` or a union with ``None``), with a single string turned into a list for ``list[str]``;
    ``(False, None)`` otherwise."""
    origin = typing.get_origin(tp)
    if origin in (types.UnionType, typing.Union):
        for member in typing.get_args(tp):
            if member is type(None):
                continue
            ok, out = _coerce(value, member)
            if ok:
                return True, out
        return False, None
    if tp is str:
        return isinstance(value, str), value
    if tp is int:  # TOML booleans are not integers (bool is an int subclass in Python)
        return isinstance(value, int) and not isinstance(value, bool), value
    if origin is list and typing.get_args(tp) == (str,):
        if isinstance(value, str):
            return True, split_urls(value)
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return True, list(value)
        return False, None
    return True, value  # pragma: no cover - every Settings field has one of the types above


def _expected(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin in (types.UnionType, typing.Union):
        return " or ".join(_expected(m) for m in typing.get_args(tp) if m is not type(None))
    if tp is str:
        return "a string"
    if tp is int:
        return "an integer"
    if origin is list:
        return "an array of strings (or one string)"
    return getattr(tp, "__name__", str(tp))  # pragma: no cover


def _example(key: str, value: Any, tp: Any) -> str:
    """A corrected line for the message, when one can be derived from the wrong value."""
    want = _expected(tp)
    if want.startswith("a string") and isinstance(value, (int, float, bool)):
        return f'; write it in quotes: {key} = "…"'
    if want.startswith("an integer") and isinstance(value, str) and value.strip().lstrip("+-").isdigit():
        return f"; write it without quotes: {key} = {int(value)}"
    if want.startswith("an array") and isinstance(value, list):
        return f'; write every item in quotes: {key} = ["https://…", "https://…"]'
    return ""


def _apply(obj: Any, values: dict[str, Any], section: str, problems: list[str]) -> None:
    """Set the fields of ``obj`` (a settings dataclass) from one ``ppmi.toml`` table; every problem found is
    appended to ``problems`` (one line each, without the file name), so a file's problems are reported together.

    Problems: an unknown key (with the closest known key: "did you mean"), a value whose TOML type does not fit
    the field's annotation (the type found and the type expected), a string holding typographic quotes,
    non-breaking spaces or invisible characters (:mod:`ppmi_build.inputs`).
    """
    from .inputs import did_you_mean, lookalike_problem, url_problem

    hints = typing.get_type_hints(type(obj))
    known = table_keys(type(obj))
    for key, value in values.items():
        if key not in known:
            hint = did_you_mean(key, known)
            problems.append(f"unknown key {key!r} in [{section}]{hint or ' (known: ' + ', '.join(known) + ')'}")
            continue
        ok, converted = _coerce(value, hints[key])
        if not ok:
            tp = hints[key]
            if isinstance(value, list) and typing.get_origin(tp) is list:
                bad = next(i for i, v in enumerate(value) if not isinstance(v, str))
                got = f"an array whose item {bad + 1} is {_toml_type(value[bad])} ({_toml_value(value[bad])})"
            else:
                got = _toml_type(value)
            problems.append(f"[{section}] {key} = {_toml_value(value)} is {got}; {key} must be "
                            f"{_expected(tp)}{_example(key, value, tp)}")
            continue
        texts = converted if isinstance(converted, list) else [converted]
        check = url_problem if key in URL_KEYS else lookalike_problem
        bad_text = next((p for p in (check(t, f"[{section}] {key}") for t in texts if isinstance(t, str)) if p),
                        None)
        if bad_text:
            problems.append(bad_text)
            continue
        setattr(obj, key, converted)


#: keys whose values are URLs (checked by :func:`ppmi_build.inputs.url_problem`: parseable, http(s), no typo)
URL_KEYS = frozenset({"url", "graph_url", "arm_url", "timestamp_urls"})


def table_keys(cls: type) -> tuple[str, ...]:
    """The keys a ``ppmi.toml`` table of settings class ``cls`` takes: its dataclass fields (``name`` of an
    environment is the table's own name, not a key)."""
    return tuple(f.name for f in dataclasses.fields(cls) if not (cls is EnvironmentSettings and f.name == "name"))


def _toml_error(text: str, err: Exception, path: Path) -> str:
    """The message for a TOML syntax error: tomllib's, or the pasted characters that caused it (typographic quotes
    around a string, a non-breaking space between key and ``=``), named with their line."""
    from .inputs import lookalike_problem

    for number, line in enumerate(text.splitlines(), 1):
        problem = lookalike_problem(line.strip(), f"line {number}")
        if problem:
            return f"{path} is not valid TOML: {problem}"
    return f"{path} is not valid TOML: {err}; fix the file"


#: TOML nesting deeper than this is refused before parsing (tomllib parses arrays and inline tables recursively;
#: a file of a thousand ``[`` ends in RecursionError). No ppmi.toml key nests more than one array.
MAX_TOML_NESTING = 32


def _nesting_problem(text: str) -> str | None:
    """A line naming the first place where arrays / inline tables nest deeper than :data:`MAX_TOML_NESTING`
    (brackets inside strings and comments are not counted), or None."""
    depth = 0
    line = 1
    quote = ""
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if quote:
            if ch == "\\" and quote in ('"', '"""'):
                i += 2
                continue
            if text.startswith(quote, i):
                i += len(quote)
                quote = ""
                continue
            if ch == "\n":
                line += 1
        elif ch == "#":
            j = text.find("\n", i)
            i = n if j < 0 else j
            continue
        elif ch in "\"'":
            quote = ch * 3 if text.startswith(ch * 3, i) else ch
            i += len(quote)
            continue
        elif ch == "\n":
            line += 1
        elif ch in "[{" and (depth > 0 or _after_equals(text, i)):
            depth += 1
            if depth > MAX_TOML_NESTING:
                return (f"arrays or inline tables nest deeper than {MAX_TOML_NESTING} levels at line {line}; "
                        "no ppmi.toml setting needs that: fix the file")
        elif ch in "]}" and depth > 0:
            depth -= 1
        i += 1
    return None


def _after_equals(text: str, i: int) -> bool:
    """True when the ``[``/``{`` at ``i`` starts a value (after ``=`` on its line), not a ``[table]`` header."""
    start = text.rfind("\n", 0, i) + 1
    return "=" in text[start:i]


#: byte-order marks, longest first (the UTF-32 LE mark starts with the UTF-16 LE one)
_BOMS = ((codecs.BOM_UTF32_LE, "utf-32", "UTF-32"), (codecs.BOM_UTF32_BE, "utf-32", "UTF-32"),
         (codecs.BOM_UTF8, "utf-8-sig", "UTF-8"), (codecs.BOM_UTF16_LE, "utf-16", "UTF-16"),
         (codecs.BOM_UTF16_BE, "utf-16", "UTF-16"))


def read_config_text(path: Path) -> str:
    """The text of ``ppmi.toml``: UTF-8 (TOML v1.0.0), or UTF-8/UTF-16/UTF-32 with a byte-order mark (what
    Windows PowerShell 5 writes: ``Out-File`` and ``>`` UTF-16 LE with BOM, ``-Encoding utf8`` UTF-8 with BOM).

    Raises:
        ConfigError: unreadable, or not text in one of those encodings (names the file and how to save it).
    """
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise ConfigError(f"cannot read {path}: {e.strerror}; check the file and its permissions") from None
    fix = "save it as UTF-8 (PowerShell: Set-Content -Encoding utf8; an editor: 'Save with encoding UTF-8')"
    for bom, codec, name in _BOMS:
        if raw.startswith(bom):
            try:
                return raw.decode(codec)
            except UnicodeDecodeError as e:
                raise ConfigError(f"{path} starts with a {name} byte-order mark but is not valid {name} "
                                  f"(offset {e.start}); {fix}") from None
    if b"\x00" in raw:
        raise ConfigError(f"{path} holds NUL bytes: it looks like UTF-16 or UTF-32 text without a byte-order "
                          f"mark; {fix}")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path} is not UTF-8 text (byte 0x{raw[e.start]:02x} at offset {e.start}); "
                          f"{fix}") from None


#: Environment variables that hold secrets: child processes (dotnet, osslsigncode, nuget, signtool)
#: never get them. PFX: ``PPMI_PFX_PASSWORD``/``PPMI_PFX_BASE64``; PKCS#11: ``PPMI_PKCS11_PIN``; tokens:
#: ``PPMI_ACCESS_TOKEN``, ``PPMI_GRAPH_TOKEN``, ``PPMI_ARM_TOKEN``; azure-identity's ``EnvironmentCredential`` secrets
#: (``AZURE_CLIENT_SECRET``, ``AZURE_CLIENT_CERTIFICATE_PASSWORD``; ``AZURE_FEDERATED_TOKEN`` for tools that take
#: the assertion itself); Azure Pipelines' ``SYSTEM_ACCESSTOKEN``; GitHub Actions' OIDC request token
#: ``ACTIONS_ID_TOKEN_REQUEST_TOKEN``.
SECRET_ENV = ("PPMI_PFX_PASSWORD", "PPMI_PFX_BASE64", "PPMI_PKCS11_PIN", "PPMI_ACCESS_TOKEN", "PPMI_GRAPH_TOKEN",
              "PPMI_ARM_TOKEN", "AZURE_CLIENT_SECRET", "AZURE_CLIENT_CERTIFICATE_PASSWORD", "AZURE_FEDERATED_TOKEN",
              "SYSTEM_ACCESSTOKEN", "ACTIONS_ID_TOKEN_REQUEST_TOKEN")


def secret_env_names(settings: Settings | None = None, extra: Iterable[str | None] = ()) -> frozenset[str]:
    """Names of the environment variables a child process must not inherit.

    :data:`SECRET_ENV`, plus the variable ``[signing] password_env`` of ``settings`` names, plus ``extra`` (e.g.
    the ``--password-env`` of the command line; None/empty entries are ignored).
    """
    names = set(SECRET_ENV)
    if settings is not None and settings.signing.password_env:
        names.add(settings.signing.password_env)
    names.update(n for n in extra if n)
    return frozenset(names)


def scrubbed_environ(environ: typing.Mapping[str, str] | None = None, settings: Settings | None = None,
                     extra: Iterable[str | None] = ()) -> dict[str, str]:
    """A copy of ``environ`` (default ``os.environ``) without :func:`secret_env_names`, for a child process."""
    drop = secret_env_names(settings, extra)
    return {k: v for k, v in (os.environ if environ is None else environ).items() if k not in drop}


def load_settings(
    start: Path | str | None = None,
    *,
    environ: dict[str, str] | None = None,
    overrides: dict[str, Any] | None = None,
    require_file: bool = False,
) -> Settings:
    """Load and merge configuration.

    Args:
        start: a project folder, a ``ppmi.toml`` path, or None for the current folder (searches parents).
        environ: environment mapping (default ``os.environ``).
        overrides: CLI values as dotted keys, e.g. ``{"identity.tenant_id": "…", "signing.certificate": "x.pfx"}``;
            ``None`` values are ignored.
        require_file: raise ConfigError when no ``ppmi.toml`` is found.
    Raises:
        ConfigError: unreadable file or TOML (see :func:`read_config_text`), unknown keys, wrong types (see
            :func:`_apply`), values out of range.
    """
    env = os.environ if environ is None else environ
    cfg_path = find_config(Path(start) if start else None)
    if cfg_path is None and require_file:
        raise ConfigError(f"no {CONFIG_NAME} found in {Path(start or Path.cwd()).resolve()} or its parents; "
                          "run `ppmi-build init` or pass the project folder")
    root = cfg_path.parent if cfg_path else Path(start or Path.cwd()).resolve()
    s = Settings(root=root, config_file=cfg_path)
    if cfg_path:
        import tomllib  # only when there is a ppmi.toml (keeps `ppmi-build sign` start-up short)

        text = read_config_text(cfg_path)
        nesting = _nesting_problem(text)
        if nesting:
            raise ConfigError(f"{cfg_path}: {nesting}")
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(_toml_error(text, e, cfg_path)) from None
        except RecursionError:  # pragma: no cover - _nesting_problem refuses such files first
            raise ConfigError(f"{cfg_path}: nested too deeply to read; fix the file") from None
        problems: list[str] = []
        _read_tables(data, s, problems)
        _raise_problems(cfg_path, problems)

    from .inputs import lookalike_problem, url_problem

    env_problems: list[str] = []

    def checked(var: str, value: str, url: bool = False) -> bool:
        problem = (url_problem if url else lookalike_problem)(value, var)
        if problem:
            env_problems.append(problem)
        return problem is None

    def from_env(var: str, obj: Any, attr: str, conv: Any = str) -> None:
        if env.get(var) and checked(var, env[var], url=attr in URL_KEYS):
            try:
                setattr(obj, attr, conv(env[var]))
            except ValueError:
                raise ConfigError(f"{var}={env[var]!r} is not valid for {attr}") from None

    from_env("PPMI_TENANT_ID", s.identity, "tenant_id")
    from_env("PPMI_APPLICATION_ID", s.identity, "application_id")
    from_env("PPMI_MI_VERSION", s.identity, "version", int)
    from_env("PPMI_CLOUD", s.identity, "cloud")
    from_env("PPMI_MANAGED_IDENTITY_ID", s.identity, "managed_identity_id")
    from_env("PPMI_GRAPH_URL", s.identity, "graph_url")
    from_env("PPMI_ARM_URL", s.identity, "arm_url")
    from_env("PPMI_FIC_TARGET", s.identity, "fic_target")
    from_env("PPMI_APPLICATION_OBJECT_ID", s.identity, "application_object_id")
    from_env("PPMI_UAMI_RESOURCE_ID", s.identity, "uami_resource_id")
    from_env("PPMI_CERT", s.signing, "certificate")
    if "PPMI_TIMESTAMP_URLS" in env:  # set but empty = no timestamp (overrides ppmi.toml)
        urls = split_urls(env["PPMI_TIMESTAMP_URLS"])
        if all(checked("PPMI_TIMESTAMP_URLS", u, url=True) for u in urls):
            s.signing.timestamp_urls = urls
    for var, value in env.items():
        if var.startswith("PPMI_ENV_") and value:
            rest = var[len("PPMI_ENV_"):]
            for suffix, attr in (("_URL", "url"), ("_ENVIRONMENT_ID", "environment_id"), ("_SOLUTION", "solution")):
                if rest.endswith(suffix) and rest[: -len(suffix)]:
                    if not checked(var, value, url=attr == "url"):
                        break
                    name = rest[: -len(suffix)].lower()
                    e_obj = s.environments.setdefault(name, EnvironmentSettings(name=name))
                    setattr(e_obj, attr, value)
                    break

    if env_problems:
        raise ConfigError(env_problems[0] if len(env_problems) == 1 else
                          f"{len(env_problems)} environment variables have problems:\n  " + "\n  ".join(env_problems))

    for dotted, value in (overrides or {}).items():
        if value is None:
            continue
        section, _, attr = dotted.partition(".")
        target = {"plugin": s.plugin, "identity": s.identity, "signing": s.signing}.get(section)
        if target is None or not hasattr(target, attr):
            raise ConfigError(f"internal: unknown setting {dotted}")
        setattr(target, attr, value)

    value_problems = _value_problems(s)  # values from PPMI_* variables or the command line (the file's: above)
    if value_problems:
        raise ConfigError(value_problems[0])
    return s


def _value_problems(s: Settings) -> list[str]:
    """Settings whose value is not one of the allowed ones (one line each, with the fix)."""
    problems = []
    if s.plugin.kind not in ("assembly", "package"):
        problems.append(f"[plugin] kind = {s.plugin.kind!r}; use \"assembly\" or \"package\"")
    if s.identity.version not in (0, 1, 2):
        problems.append(f"[identity] version = {s.identity.version!r}; use 0, 1 or 2 (2 is recommended)")
    if s.identity.fic_target not in ("app", "uami"):
        problems.append(f"[identity] fic_target = {s.identity.fic_target!r}; use \"app\" or \"uami\"")
    return problems
