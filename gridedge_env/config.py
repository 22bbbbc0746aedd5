"""Typed configuration from YAML: frozen dataclasses are the truth, YAML holds overrides.

:func:`from_dict` builds a dataclass from a nested dict, rejecting unknown keys and values of the
wrong type with an error that names the file and the key path (``ieee13-50.yaml: battery.p_max_kw:
expected a number or a [low, high] pair, got 'big'``). Value checks live in each dataclass's
``__post_init__`` and are reported with the same prefix.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from pathlib import Path

import yaml


class ConfigError(ValueError):
    """A configuration file or dict has an unknown key or a bad value (message names both)."""


def _non_finite(value) -> bool:
    """Whether ``value`` is, or holds (in a tuple, list or dict), a NaN or infinite float."""
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, (tuple, list)):
        return any(_non_finite(v) for v in value)
    if isinstance(value, dict):
        return any(_non_finite(v) for v in value.values())
    return False


def check_fields(obj, prefix: str = "", *, at_least_one=(), positive=()) -> None:
    """The usual ``__post_init__`` bounds of a config dataclass: every float field (also inside
    tuples, lists and dicts) must be finite, no NaN or inf (``nan < 0`` is false, so a NaN passes
    every comparison bound); fields ``at_least_one`` (counts) must be ``>= 1``, fields
    ``positive`` (step sizes, scales) ``> 0``; a ``ValueError`` names the first one that is
    not, as ``{prefix}{field}``, with its value."""
    if dataclasses.is_dataclass(obj):
        for f in dataclasses.fields(obj):
            value = getattr(obj, f.name)
            if _non_finite(value):
                raise ValueError(f"{prefix}{f.name} must be a finite number, got {value!r}")
    for k in at_least_one:
        if getattr(obj, k) < 1:
            raise ValueError(f"{prefix}{k} must be >= 1, got {getattr(obj, k)}")
    for k in positive:
        if not getattr(obj, k) > 0:
            raise ValueError(f"{prefix}{k} must be > 0, got {getattr(obj, k)}")


def _convert(tp, value, where: str):
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return from_dict(tp, value, where)
    if origin in (typing.Union, types.UnionType):
        for a in args:
            try:
                return _convert(a, value, where)
            except ConfigError:
                continue
        names = [getattr(a, "__name__", str(a)) for a in args]
        raise ConfigError(f"{where}: {value!r} fits none of {names}")
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"{where}: must be one of {list(args)}, got {value!r}")
        return value
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(args[0], v, f"{where}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise ConfigError(f"{where}: expected {len(args)} values, got {len(value)}")
        pairs = enumerate(zip(args, value, strict=True))
        return tuple(_convert(a, v, f"{where}[{i}]") for i, (a, v) in pairs)
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return {str(k): _convert(args[1], v, f"{where}.{k}") for k, v in value.items()}
    if tp is type(None):
        if value is not None:
            raise ConfigError(f"{where}: expected null, got {value!r}")
        return None
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp in (str, bool):
        if not isinstance(value, tp):
            raise ConfigError(f"{where}: expected {tp.__name__}, got {value!r}")
        return value
    return value


def from_dict(cls, data: dict, where: str = "config"):
    """Instantiate dataclass ``cls`` from ``data`` (unknown keys and bad values: ConfigError)."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r} (known: {', '.join(sorted(names))})")
    kwargs = {k: _convert(hints[k], v, f"{where}.{k}") for k, v in data.items()}
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as exc:
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(f"{where}: {exc}") from None


def load_yaml(cls, path: str | Path, overrides: dict | None = None):
    """Read a YAML file into ``cls``; ``overrides`` (nested dict) win over the file."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read YAML ({exc})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping")
    return from_dict(cls, merge(data, overrides or {}), path.name)


def merge(base: dict, over: dict) -> dict:
    """Recursive dict merge: ``over`` wins; nested mappings merge key by key."""
    out = dict(base)
    for k, v in over.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out
