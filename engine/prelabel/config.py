"""Batch job settings: the pre-label job (``configs/jobs/prelabel.yaml``) and the embed job.

An unknown key or a wrong type raises ``ConfigError`` naming the key and the
file. A missing file means all defaults. The resolved config is stored in the
job record, so a job run later (or by another process) behaves the same.

The model-actor sizing keys (``num_model_actors``, ``actor_num_cpus``,
``torch_threads``) default to ``auto`` (stored as ``null``): the job sizes
them from the cluster it runs on (``engine.prelabel.pipeline.actor_sizing``).
A concrete value, including one stored by an older job, is used as given.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from engine.config import ConfigError, ModelSpec, Settings, format_validation_error, read_yaml

DEFAULT_BATCH_SIZE = 8
JOB_CONFIG_NAME = "jobs/prelabel.yaml"
AUTO = "auto"


class PrelabelConfig(BaseModel):
    """How a pre-label job runs; see ``configs/jobs/prelabel.yaml`` for each key."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    batch_size: int | None = Field(default=None, gt=0)
    # None (or "auto" in YAML): sized from the cluster when the job runs
    num_model_actors: int | None = Field(default=None, gt=0)
    actor_num_cpus: float | None = Field(default=None, gt=0)
    torch_threads: int | None = Field(default=None, gt=0)
    decode_num_cpus: float = Field(default=1.0, gt=0)
    decode_concurrency: int | None = Field(default=None, gt=0)
    decode_memory_bytes: int = Field(default=1024**3, gt=0)
    decode_batch_size: int = Field(default=8, gt=0)
    rows_per_block: int = Field(default=32, gt=0)
    write_batch_size: int = Field(default=32, gt=0)
    max_pixels: int | None = Field(default=None, gt=0)
    max_file_bytes: int = Field(default=256 * 1024**2, gt=0)
    limit: int | None = Field(default=None, gt=0)
    device: str = "auto"
    precision: str = Field(default="auto", pattern=r"^(auto|fp32|fp16|bf16)$")
    mask_min_box_score: float = Field(default=0.25, ge=0.0, le=1.0)
    mask_multimask: bool | None = None
    # Test-time augmentation of a yolo detector (engine.models.yolo_tta), e.g. [hflip,
    # "scale:0.83"]: becomes the spec's params.tta (so its version); None: the spec's own.
    tta: tuple[str, ...] | None = None
    # How this job's predictions are ranked (engine.sampling.policy fields); None: the
    # queue's current policy (labelengine rank / POST /queue/rank), else settings.rank_policy.
    rank_policy: dict[str, Any] | None = None
    max_text_chars: int = Field(default=1_000_000, gt=0)
    # Where the stages run: ray (the Ray Data pipeline), local (this process), or auto:
    # local for at most local_max_items items when no cluster is configured, else ray.
    executor: Literal["auto", "ray", "local"] = "auto"
    local_max_items: int = Field(default=512, ge=0)
    # Model replicas of the local executor: None / auto = one per CPU (one on a GPU).
    local_workers: int | None = Field(default=None, gt=0)

    @field_validator("rank_policy")
    @classmethod
    def _valid_policy(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        """A bad policy fails when the job is created, not in a worker."""
        if value is not None:
            from engine.sampling.policy import policy_from

            policy_from(value)
        return value

    @field_validator("tta")
    @classmethod
    def _valid_tta(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if value is not None:
            from engine.models.yolo_tta import parse_tta

            parse_tta(value)
        return value

    def spec_with_tta(self, spec: ModelSpec) -> ModelSpec:
        """``spec`` with this job's ``tta`` as ``params.tta`` (``[]``: none); ``tta`` unset:
        ``spec`` as it is. Only a ``yolo`` detector takes one."""
        if self.tta is None:
            return spec
        if spec.family != "yolo":
            raise ConfigError(
                f"tta applies to yolo detectors; model {spec.name!r} is {spec.family!r}"
            )
        params = {k: v for k, v in spec.params.items() if k != "tta"}
        return spec.model_copy(
            update={"params": {**params, **({"tta": list(self.tta)} if self.tta else {})}}
        )

    @field_validator(
        "num_model_actors", "actor_num_cpus", "torch_threads", "local_workers", mode="before"
    )
    @classmethod
    def _auto_is_none(cls, value: Any) -> Any:
        """``auto`` (any case) means the same as ``null``: size from the cluster."""
        if not isinstance(value, str):
            return value
        if value.strip().lower() == AUTO:
            return None
        try:
            float(value)
        except ValueError:
            raise ValueError(f"expected a positive number or {AUTO!r}, got {value!r}") from None
        return value

    def model_batch_size(self, spec: ModelSpec) -> int:
        """Items per model call: this config, else the spec's ``batch_size`` param, else 8."""
        if self.batch_size is not None:
            return self.batch_size
        value = spec.params.get("batch_size", DEFAULT_BATCH_SIZE)
        if not isinstance(value, int) or value <= 0:
            raise ConfigError(
                f"model {spec.name!r}: params.batch_size must be a positive integer, got {value!r}"
            )
        return value

    def resolved_max_pixels(self, settings: Settings) -> int:
        return self.max_pixels if self.max_pixels is not None else settings.max_image_pixels


def default_config_path(settings: Settings) -> Path:
    return settings.config_dir / JOB_CONFIG_NAME


def load_prelabel_config(path: Path | None, **overrides: Any) -> PrelabelConfig:
    """Read ``path`` (``None`` or a missing default file: all defaults) plus overrides.

    ``overrides`` whose value is ``None`` are ignored, so CLI options that were
    not given do not erase the file's values.
    """
    data = read_yaml(path) if path is not None else {}
    data.update({k: v for k, v in overrides.items() if v is not None})
    source = str(path) if path is not None else "prelabel job config"
    try:
        return PrelabelConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, source)) from exc


def config_for_job(
    settings: Settings, job_config_path: Path | None, **overrides: Any
) -> PrelabelConfig:
    """The explicit file if given (it must exist), else ``<config_dir>/jobs/prelabel.yaml``
    when present, else defaults."""
    if job_config_path is None:
        default = default_config_path(settings)
        job_config_path = default if default.is_file() else None
    return load_prelabel_config(job_config_path, **overrides)


class EmbedConfig(BaseModel):
    """How an embed job runs (stored in the job record)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    top: int | None = Field(default=None, gt=0, description="only the queue's top N")
    limit: int | None = Field(default=None, gt=0, description="only the first N selected")
    batch_size: int = Field(default=8, gt=0, description="images per actor call")
    num_actors: int = Field(default=1, gt=0)
    actor_num_cpus: float = Field(default=1.0, gt=0)
    torch_threads: int | None = Field(default=None, gt=0)
    decode_num_cpus: float = Field(default=1.0, gt=0)
    decode_batch_size: int = Field(default=8, gt=0)
    decode_memory_bytes: int = Field(default=512 * 1024**2, gt=0)
    rows_per_block: int = Field(default=16, gt=0)
    write_batch_size: int = Field(default=16, gt=0, description="rows per progress update")
    max_file_bytes: int = Field(default=256 * 1024**2, gt=0)
    device: str = "auto"
    precision: str = Field(default="auto", pattern=r"^(auto|fp32|fp16|bf16)$")
