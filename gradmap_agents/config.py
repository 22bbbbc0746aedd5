"""Training configuration: frozen dataclasses are the truth, YAML files hold overrides only.

The registered configs ship inside the package (``gradmap_agents/configs/*.yaml``, a test loads
every one) and are passed by name: ``gradmap-train --config ieee13-50`` (:func:`config_names`,
:func:`config_path`); any other YAML file is passed by its path. Unknown keys, wrong types and
impossible values raise :class:`~gridedge_env.config.ConfigError` naming the file and key
(``gridedge_env.config``).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Literal

import yaml

from gridedge_env.config import ConfigError, check_fields, from_dict, load_yaml, merge
from gridedge_env.registry import registry

from .dual import GRANULARITIES, SCHEMES


@dataclass(frozen=True)
class PolicyConfig:
    """Every agent's own MLP (:mod:`gradmap_agents.policy`)."""

    hidden: tuple[int, ...] = (16,)
    """Hidden layer sizes. Default one layer of 16 (``docs/gradmap.md``: as good as (16, 16)
    or (32,) on ieee13-50 and the cheapest per step)."""
    dtype: Literal["fp32", "fp64"] = "fp32"
    """Precision of the policies (independent of the environment's): float32 halves their
    memory-bound work on a CPU; gradients pass through the casts."""
    activation: Literal["tanh", "relu"] = "tanh"
    """Hidden-layer activation (the output is always tanh, actions in (-1, 1))."""
    hidden_by_kind: dict[str, tuple[int, ...]] = field(default_factory=dict)
    """Other hidden sizes for some device kinds (``battery``, ``heatpump``, ``generator``)."""
    out_scale: float = 0.1
    """Scale of the output layer's initial weights: initial actions are near 0."""

    def __post_init__(self):
        if any(h < 1 for h in self.hidden):
            raise ValueError(f"policy.hidden sizes must be >= 1, got {self.hidden}")
        unknown = set(self.hidden_by_kind) - {"battery", "heatpump", "generator"}
        if unknown:
            raise ValueError(f"policy.hidden_by_kind: unknown kinds {sorted(unknown)}")
        check_fields(self, "policy.", positive=("out_scale",))


@dataclass(frozen=True)
class DualConfig:
    """Multipliers of the network constraints (:mod:`gradmap_agents.dual`)."""

    granularity: Literal["node_time", "node", "time", "global"] = "node_time"
    """One multiplier per node-phase and time of day (default), per node-phase, per time of
    day, or one per constraint kind."""
    init_voltage_gbp_per_pu: float = 100.0
    """Initial voltage multipliers, GBP per p.u. per node-step (the reward's penalty weight)."""
    init_line_gbp: float = 10.0
    """Initial line multipliers, GBP per unit overload per line-phase-step."""
    lr_voltage: float = 2e5
    """Dual ascent step on voltage multipliers, GBP/p.u. per (p.u. of mean violation)."""
    lr_line: float = 2e4
    """Dual ascent step on line multipliers."""
    max_gbp: float = 1e6
    """Upper bound of every multiplier (a projection that keeps one bad batch from running
    away)."""
    margin_pu: float = 0.003
    """Voltage margin, p.u.: train against ``[v_min + margin, v_max - margin]`` (evaluation
    always uses the limits)."""
    line_margin: float = 0.03
    """Line margin: train against ``line_loading_max - line_margin``."""
    fixed: bool = False
    """Keep the initial multipliers (the fixed-penalty variant): no dual ascent."""
    scheme: Literal["rising", "signed"] = "rising"
    """``"rising"``: multipliers weigh the exceedances and can only grow; ``"signed"``: they
    weigh the signed constraint functions and fall where a limit holds with slack
    (:mod:`gradmap_agents.dual`)."""

    def __post_init__(self):
        if self.granularity not in GRANULARITIES:
            raise ValueError(f"dual.granularity must be one of {GRANULARITIES}")
        if self.scheme not in SCHEMES:
            raise ValueError(f"dual.scheme must be one of {SCHEMES}, got {self.scheme!r}")
        for k in ("init_voltage_gbp_per_pu", "init_line_gbp", "lr_voltage", "lr_line", "margin_pu",
                  "line_margin"):
            if getattr(self, k) < 0:
                raise ValueError(f"dual.{k} must be >= 0, got {getattr(self, k)}")
        check_fields(self, "dual.", positive=("max_gbp",))


@dataclass(frozen=True)
class AlgoConfig:
    """The policy update (:mod:`gradmap_agents.gradmap`)."""

    method: Literal["gradmap", "gradma"] = "gradmap"
    """``gradmap`` (proximal surrogate, K epochs per environment gradient) or ``gradma`` (one
    step per environment gradient)."""
    lr: float = 3e-3
    """Adam step size of the policy parameters."""
    days_per_gradient: int = 32
    """Training days ``B`` rolled out per environment gradient."""
    epochs: int = 4
    """GradMAP: epochs ``K`` over the recorded samples per environment gradient."""
    minibatches: int = 4
    """GradMAP: minibatches per epoch (of the ``B x T`` (day, step) samples)."""
    eta: float = 0.1
    """GradMAP: proximal step ``eta`` (action units with ``grad_scale="rms"``)."""
    eps: float = 0.2
    """GradMAP: trust region ``|pi(o) - a0| <= eps`` per action (clipped form)."""
    surrogate: Literal["clipped", "proximal"] = "clipped"
    """GradMAP: the clipped, pessimistic surrogate (default) or the plain proximal one."""
    grad_scale: Literal["rms", "none"] = "rms"
    """GradMAP and GradMA: divide the action gradient by its root mean square (``eta`` in action units)."""
    recompute: bool = False
    """Recompute each step's policies and devices in the environment gradient's backward instead
    of keeping their tensors (whole-day path; the same gradient, less memory, a little more
    time: ``docs/gradmap.md``, peak memory). Not with ``observe_voltage``."""

    def __post_init__(self):
        if self.method not in ("gradmap", "gradma"):
            raise ValueError(f"algo.method must be 'gradmap' or 'gradma', got {self.method!r}")
        check_fields(self, "algo.", at_least_one=("days_per_gradient", "epochs", "minibatches"),
                     positive=("lr", "eta", "eps"))


@dataclass(frozen=True)
class LoggingConfig:
    """Where training reports go (the CLI layer; the trainer only calls ``progress_fn``)."""

    project: str = "gridedge"
    """W&B project."""
    group: str | None = None
    """W&B group (default: the environment id)."""
    tags: tuple[str, ...] = ()
    """W&B tags."""


@dataclass(frozen=True)
class TrainConfig:
    """A GradMAP / GradMA training run; YAML files override these defaults."""

    env: str = "ieee13-50-v0"
    """Registered environment id (``gridedge_env.registry``)."""
    env_overrides: dict[str, object] = field(default_factory=dict)
    """Environment or scenario options passed to ``make_vec`` (``observe_voltage: true``, ...)."""
    dtype: Literal["fp64", "fp32"] = "fp64"
    device: str = "cpu"
    seed: int = 0
    """Seeds the policies' initialisation, the day sampling and the minibatch order."""
    iterations: int = 200
    """Environment gradients in the run."""
    eval_every: int = 10
    """Validation evaluation every this many iterations (and at the end)."""
    checkpoint_every: int = 10
    """Checkpoint every this many iterations (and at the end)."""
    max_nonconverged_share: float = 0.01
    """Largest share (0..1) of an environment gradient's day-steps whose power flow may fail to
    converge; above it training stops with :class:`~.train.NonConvergenceError` (those steps
    carry no gradient, and their voltages mean nothing). Not part of the fingerprint: a resumed
    run may change it."""
    algo: AlgoConfig = field(default_factory=AlgoConfig)
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    dual: DualConfig = field(default_factory=DualConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)

    def __post_init__(self):
        if self.env not in registry:
            raise ValueError(f"env {self.env!r} is not registered; known: {sorted(registry)}")
        if self.dtype not in ("fp64", "fp32"):
            raise ValueError(f"dtype must be fp64 or fp32, got {self.dtype!r}")
        check_fields(self, at_least_one=("iterations", "eval_every", "checkpoint_every"))
        if not 0 <= self.max_nonconverged_share <= 1:
            raise ValueError("max_nonconverged_share must be in [0, 1], got "
                             f"{self.max_nonconverged_share}")

    def as_dict(self) -> dict:
        return json.loads(json.dumps(asdict(self)))

    def fingerprint(self) -> str:
        """Hash of everything that changes the run's numbers (not :data:`RESUMABLE_KEYS`:
        ``iterations``, which a resumed run may extend, the logging destination, and the
        non-convergence limit)."""
        d = self.as_dict()
        for k in RESUMABLE_KEYS:
            *parents, leaf = k.split(".")
            inner = d
            for part in parents:
                inner = inner[part]
            inner.pop(leaf)
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


RESUMABLE_KEYS = ("iterations", "logging", "max_nonconverged_share", "algo.recompute")
"""Config keys (dotted) a resumed run may change, outside :meth:`TrainConfig.fingerprint`:
they do not change the run's numbers (``algo.recompute`` trades memory for time only)."""


def resumable(key: str) -> bool:
    """Whether the dotted ``key`` is, or lies under, one of :data:`RESUMABLE_KEYS`."""
    return any(key == k or key.startswith(f"{k}.") for k in RESUMABLE_KEYS)


def diff_keys(a: dict, b: dict, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between the nested dicts ``a`` and ``b`` (a key in one
    only counts as differing), sorted: ``diff_keys({"algo": {"lr": 1}}, {"algo": {"lr": 2}})``
    is ``["algo.lr"]``."""
    out = []
    for k in sorted(set(a) | set(b), key=str):
        va, vb = a.get(k), b.get(k)
        if isinstance(va, dict) and isinstance(vb, dict):
            out += diff_keys(va, vb, f"{prefix}{k}.")
        elif k not in a or k not in b or va != vb:
            out.append(f"{prefix}{k}")
    return out


def parse_set(items: list[str]) -> dict:
    """``["algo.epochs=8", "seed=1"]`` -> nested overrides (values parsed as YAML scalars)."""
    out: dict = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set {item!r}: expected key=value")
        try:
            parsed = yaml.safe_load(value)
        except yaml.YAMLError as exc:
            raise ConfigError(f"--set {item!r}: bad value ({exc})") from None
        if isinstance(parsed, str):  # YAML 1.1 reads 2e5 as a string; a number is meant
            try:
                parsed = float(parsed)
            except ValueError:
                pass
        node = out
        *parents, leaf = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {item!r}: {p} is not a section")
        node[leaf] = parsed
    return out


def config_names() -> list[str]:
    """Names of the registered training configs, sorted: the YAML files shipped in
    ``gradmap_agents/configs/`` without their suffix (``ieee13-50``, ``ieee123-1000``, ...).
    Each is a valid ``--config`` value and :func:`config_path` argument."""
    root = resources.files("gradmap_agents").joinpath("configs")
    return sorted(f.name.removesuffix(".yaml") for f in root.iterdir()
                  if f.is_file() and f.name.endswith(".yaml"))


def config_path(name: str) -> Path:
    """The file of the registered training config ``name`` (``"ieee13-50"``, or
    ``"ieee13-50.yaml"``), inside the installed package. An unknown name raises
    :class:`~gridedge_env.config.ConfigError` listing :func:`config_names`."""
    stem = str(name).removesuffix(".yaml")
    names = config_names()
    if stem not in names:
        raise ConfigError(f"config {str(name)!r}: not a registered config name "
                          f"(registered: {', '.join(names)})")
    return Path(str(resources.files("gradmap_agents").joinpath("configs", f"{stem}.yaml")))


def _config_file(value: str | Path) -> Path:
    """``value`` as an existing file, else as a registered name (a bare name, no folder)."""
    path = Path(value)
    if path.is_file():
        return path
    names = config_names()
    if path.name == str(value) and str(value).removesuffix(".yaml") in names:
        return config_path(str(value))
    raise ConfigError(f"config {str(value)!r}: not a file and not a registered config name "
                      f"(registered: {', '.join(names)})")


def load_config(path: str | Path | None = None, overrides: dict | None = None) -> TrainConfig:
    """A :class:`TrainConfig` from a YAML file or a registered config name (``"ieee13-50"``,
    :func:`config_names`), or the defaults (``None``), with ``overrides`` on top. An existing
    file wins over a name. A file without any key (empty, or only comments) is an error."""
    if path is None:
        return from_dict(TrainConfig, merge({}, overrides or {}), "config")
    path = _config_file(path)
    try:
        empty = yaml.safe_load(path.read_text()) is None
    except (OSError, yaml.YAMLError):
        empty = False  # load_yaml reports it, naming the file
    if empty:
        raise ConfigError(f"{path}: config file is empty (no keys; omit --config for the defaults)")
    return load_yaml(TrainConfig, path, overrides)
