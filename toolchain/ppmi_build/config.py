"""Configuration: ``ppmi.toml`` + ``PPMI_*`` environment variables + CLI options -> :class:`Settings`.

Precedence (DESIGN.md §4): CLI option > environment variable > ``ppmi.toml`` > default.

``ppmi.toml`` layout::

    [plugin]        kind = "package"|"assembly", project = "src/X.csproj", name = "..."
    [identity]      tenant_id, application_id, version (0|1|2), cloud, managed_identity_id,
                    fic_target ("app"|"uami"), application_object_id, uami_resource_id,
                    graph_url, arm_url
    [signing]       certificate, password_env, timestamp_urls = [...], backend, digest
    [environments.NAME]  url, environment_id, solution

Environment variables: ``PPMI_TENANT_ID``, ``PPMI_APPLICATION_ID``, ``PPMI_MI_VERSION``,
``PPMI_CLOUD``, ``PPMI_MANAGED_IDENTITY_ID``, ``PPMI_CERT`` (signing certificate path),
``PPMI_TIMESTAMP_URLS`` (space or comma separated; set but empty = no timestamp), ``PPMI_GRAPH_URL``, ``PPMI_ARM_URL``,
``PPMI_FIC_TARGET``, ``PPMI_APPLICATION_OBJECT_ID``, ``PPMI_UAMI_RESOURCE_ID``,
``PPMI_ENV_<NAME>_URL``, ``PPMI_ENV_<NAME>_ENVIRONMENT_ID``, ``PPMI_ENV_<NAME>_SOLUTION``.
Secrets (``PPMI_PFX_PASSWORD``, ``PPMI_PFX_BASE64``, ``PPMI_ACCESS_TOKEN``) are read where
they are used, never stored on :class:`Settings`.
"""

from __future__ import annotations

import os
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
    password_env: str | None = None
    timestamp_urls: list[str] = field(default_factory=list)
    backend: str = "auto"
    digest: str = "sha256"


@dataclass
class EnvironmentSettings:
    name: str
    url: str | None = None
    environment_id: str | None = None
    solution: str | None = None


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


def _section(data: dict[str, Any], name: str, path: Path) -> dict[str, Any]:
    value = data.get(name, {})
    if not isinstance(value, dict):
        raise ConfigError(f"{path}: [{name}] must be a table")
    return value


def _apply(obj: Any, values: dict[str, Any], path: Path, section: str) -> None:
    for key, value in values.items():
        if not hasattr(obj, key):
            raise ConfigError(f"{path}: unknown key {key!r} in [{section}]; check the spelling "
                              "(see docs/DESIGN.md §4 in ppmi-build)")
        setattr(obj, key, value)


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
        ConfigError: unreadable TOML, unknown keys, wrong types.
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

        try:
            data = tomllib.loads(cfg_path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"{cfg_path} is not valid TOML: {e}; fix the file") from None
        except OSError as e:
            raise ConfigError(f"cannot read {cfg_path}: {e.strerror}") from None
        _apply(s.plugin, _section(data, "plugin", cfg_path), cfg_path, "plugin")
        _apply(s.identity, _section(data, "identity", cfg_path), cfg_path, "identity")
        _apply(s.signing, _section(data, "signing", cfg_path), cfg_path, "signing")
        for name, values in _section(data, "environments", cfg_path).items():
            if not isinstance(values, dict):
                raise ConfigError(f"{cfg_path}: [environments.{name}] must be a table")
            e_obj = EnvironmentSettings(name=name)
            _apply(e_obj, values, cfg_path, f"environments.{name}")
            s.environments[name] = e_obj

    def from_env(var: str, obj: Any, attr: str, conv: Any = str) -> None:
        if env.get(var):
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
        s.signing.timestamp_urls = env["PPMI_TIMESTAMP_URLS"].replace(",", " ").split()
    for var, value in env.items():
        if var.startswith("PPMI_ENV_") and value:
            rest = var[len("PPMI_ENV_"):]
            for suffix, attr in (("_URL", "url"), ("_ENVIRONMENT_ID", "environment_id"), ("_SOLUTION", "solution")):
                if rest.endswith(suffix) and rest[: -len(suffix)]:
                    name = rest[: -len(suffix)].lower()
                    e_obj = s.environments.setdefault(name, EnvironmentSettings(name=name))
                    setattr(e_obj, attr, value)
                    break

    for dotted, value in (overrides or {}).items():
        if value is None:
            continue
        section, _, attr = dotted.partition(".")
        target = {"plugin": s.plugin, "identity": s.identity, "signing": s.signing}.get(section)
        if target is None or not hasattr(target, attr):
            raise ConfigError(f"internal: unknown setting {dotted}")
        setattr(target, attr, value)

    if s.plugin.kind not in ("assembly", "package"):
        raise ConfigError(f"[plugin] kind = {s.plugin.kind!r}; use \"assembly\" or \"package\"")
    if s.identity.version not in (0, 1, 2):
        raise ConfigError(f"[identity] version = {s.identity.version!r}; use 0, 1 or 2 (2 is recommended)")
    if s.identity.fic_target not in ("app", "uami"):
        raise ConfigError(f"[identity] fic_target = {s.identity.fic_target!r}; use \"app\" or \"uami\"")
    return s
