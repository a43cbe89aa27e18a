"""The server's configuration: one typed object, built once at the edge.

This is the only module that reads the environment. Values come from, in
order: command-line flags, ``SHOPRANK_*`` variables, the defaults below. An
unknown ``SHOPRANK_*`` variable is an error, so a typo cannot silently fall
back to a default.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

ENV_PREFIX = "SHOPRANK_"


class ConfigError(ValueError):
    """A configuration value or key is not valid."""


@dataclass(frozen=True)
class Settings:
    home: Path = Path("var")
    host: str = "127.0.0.1"
    port: int = 50051
    # 0 = no metrics endpoint.
    metrics_port: int = 0
    # Requests over this many candidates get INVALID_ARGUMENT; the fetch and
    # the model grow linearly with it, so it bounds a request's cost.
    max_candidates: int = 5000
    # Ids longer than this are rejected; real ids are far shorter.
    max_id_length: int = 256
    # Items per streamed message when the caller asks for 0 (measured in bench/serve.py).
    default_page_size: int = 100
    # Rankings in flight at once before new ones get RESOURCE_EXHAUSTED.
    max_in_flight: int = 64
    # Threads that run feature fetches and the model off the event loop.
    workers: int = 4
    # Seconds in-flight calls get to finish on SIGTERM.
    grace_seconds: float = 5.0
    # ONNX Runtime intra-op threads; 1 suits small batches beside other requests.
    model_threads: int = 1


def _coerce(name: str, raw: str, kind: type) -> Any:
    try:
        if kind is Path:
            return Path(raw)
        return kind(raw)
    except ValueError:
        raise ConfigError(
            f"{ENV_PREFIX}{name.upper()}={raw!r} is not a valid {kind.__name__}"
        ) from None


def _kinds() -> dict[str, type]:
    defaults = Settings()
    return {f.name: type(getattr(defaults, f.name)) for f in fields(Settings)}


def from_env(environ: Mapping[str, str] | None = None) -> Settings:
    """Settings from SHOPRANK_* variables over the defaults."""
    environ = os.environ if environ is None else environ
    kinds = _kinds()
    values: dict[str, Any] = {}
    for key, raw in environ.items():
        if not key.startswith(ENV_PREFIX):
            continue
        name = key[len(ENV_PREFIX) :].lower()
        if name not in kinds:
            known = ", ".join(ENV_PREFIX + k.upper() for k in kinds)
            raise ConfigError(f"unknown setting {key}; known: {known}")
        values[name] = _coerce(name, raw, kinds[name])
    return validate(Settings(**values))


def with_overrides(settings: Settings, **overrides: Any) -> Settings:
    """Settings with the given non-None values replaced (command-line flags)."""
    given = {k: v for k, v in overrides.items() if v is not None}
    unknown = set(given) - set(_kinds())
    if unknown:
        raise ConfigError(f"unknown setting(s): {', '.join(sorted(unknown))}")
    return validate(replace(settings, **given))


def validate(settings: Settings) -> Settings:
    for name in (
        "max_candidates",
        "max_id_length",
        "default_page_size",
        "max_in_flight",
        "workers",
        "model_threads",
    ):
        if getattr(settings, name) < 1:
            raise ConfigError(f"{name} must be at least 1, got {getattr(settings, name)}")
    for name in ("port", "metrics_port"):
        if not 0 <= getattr(settings, name) <= 65535:
            raise ConfigError(f"{name} must be a port number, got {getattr(settings, name)}")
    return settings
