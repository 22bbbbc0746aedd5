"""Registered, versioned environments: :func:`make` (PettingZoo) and :func:`make_vec` (batched).

Ids are ``<scenario>-v<version>`` (``"ieee13-50-v0"``, ``"ieee123-1000-v0"``). ``overrides`` of
:func:`make` / :func:`make_vec` are validated like YAML: keys of :class:`~gridedge_env.core.EnvConfig`
(``reward``, ``observe_voltage``, ``straight_through``, ``split``) set environment options, any
other key overrides the scenario (``n_agents=20``, ``battery={"p_max_kw": [3, 4]}``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from .config import ConfigError, from_dict
from .core import EnvConfig, EnvParams, make_env
from .costs import RewardConfig
from .scenarios import load_scenario


@dataclass(frozen=True)
class EnvSpec:
    id: str
    scenario: str
    description: str


registry: dict[str, EnvSpec] = {}


def register(env_id: str, scenario: str, description: str = "") -> None:
    """Register ``env_id`` (``name-vN``) for a scenario name or YAML path."""
    if "-v" not in env_id or not env_id.rsplit("-v", 1)[1].isdigit():
        raise ValueError(f"environment ids are versioned as '<name>-v<N>', got {env_id!r}")
    if env_id in registry:
        raise ValueError(f"{env_id!r} is already registered")
    registry[env_id] = EnvSpec(env_id, scenario, description)


register("ieee13-50-v0", "ieee13-50", "50 agents on IEEE 13: the small case for CPU tests")
register("ieee123-1000-v0", "ieee123-1000", "1,000 agents on IEEE 123: the paper's main case")
register("ieee13-50-v1", "ieee13-50-dtou",
         "ieee13-50-v0 with a day-varying import price: the real LCL dToU schedule of 2013")
register("ieee123-1000-v1", "ieee123-1000-dtou",
         "ieee123-1000-v0 with a day-varying import price: the real LCL dToU schedule of 2013")
register("ieee8500-10000-v0", "ieee8500-10000",
         "10,000 agents on split-phase services of the IEEE 8500-node feeder")
register("ieee8500-10000-v1", "ieee8500-10000-dtou",
         "ieee8500-10000-v0 with a day-varying import price: the real LCL dToU schedule of 2013")

_ENV_KEYS = {f.name for f in dataclasses.fields(EnvConfig)} - {"scenario"}


def env_params(env_id: str, device="cpu", dtype=torch.float64, **overrides) -> EnvParams:
    """Build the :class:`~gridedge_env.core.EnvParams` of a registered environment."""
    if env_id not in registry:
        raise KeyError(f"unknown environment {env_id!r}; registered: {sorted(registry)}")
    env_over = {k: overrides.pop(k) for k in list(overrides) if k in _ENV_KEYS}
    scenario = load_scenario(registry[env_id].scenario, **overrides)
    if isinstance(env_over.get("reward"), dict):
        env_over["reward"] = from_dict(RewardConfig, env_over["reward"], f"{env_id}.reward")
    try:
        config = EnvConfig(scenario=scenario, **env_over)
    except TypeError as exc:
        raise ConfigError(f"{env_id}: {exc}") from None
    if config.split not in ("train", "validation", "test"):
        raise ConfigError(f"{env_id}.split must be train, validation or test, got {config.split!r}")
    return make_env(config, device=device, dtype=dtype)
