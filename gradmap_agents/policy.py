"""One independent policy per agent, stored as stacked parameters and run as one batched matmul.

Agent ``i``'s policy is a small MLP of its own local observation,

    a_i = tanh(W_L,i h_{L-1} + b_L,i),   h_l = tanh(W_l,i h_{l-1} + b_l,i),
    h_0 = (o_i - mean_i) / std_i,

with no parameter sharing: layer ``l``'s weights are one ``(N, in, out)`` tensor and all ``N``
agents are evaluated with one batched matmul per layer (the layout of TorchRL's
``MultiAgentMLP`` with ``share_params=False``; no Python loop over agents), in the fused kernel
of :mod:`.fused_mlp` (the same function with a hand-written backward). Agents of different device kinds may
have different hidden sizes: each run of consecutive kinds with equal sizes is one *group*
(agents are numbered kind by kind, so a group is a contiguous slice); by default all agents form
one group. The observation normalisation (``mean_i``, ``std_i``, per agent and feature) is fixed
from training data and saved with the weights (:func:`observation_stats`).

**Initial policy** (:meth:`StackedPolicy.fit_output`, shared by every learner: GradMAP, GradMA
and the PPO actors). A fresh policy acts as no control does (batteries idle, generators off, heat
pumps on their thermostat) instead of at ``a = 0`` (generators at half output): each agent's
output layer (weights and bias; the hidden layers keep their random initialisation) is the ridge
least-squares fit, over no-control samples ``(o, a)``, of the pre-``tanh`` target
``atanh(clip(a, -0.95, 0.95))`` on the agent's last hidden features ``h(o)``,

    min_{w, b} mean_s (w . h(o_s) + b - z_s)^2 + 0.01 |w|^2,   z = atanh(clip(a, -0.95, 0.95)).

The output is ``tanh``, so ``-1`` (a generator off) is out of reach: :data:`INITIAL_ACTION_BOUND`
trades what the residual output costs against the output's slope ``1 - a^2``; the ridge weight
(:data:`OUTPUT_RIDGE`) keeps the fitted weights small. A constant bias (each agent's mean
no-control action) would not do: a heat pump held at its yearly mean setting underheats in winter
(measured, ``docs/gradmap.md``).

Shapes: observations ``(..., N, F)`` (any leading batch shape, any memory layout), actions
``(..., N)`` in ``(-1, 1)``. The policies compute in their own dtype (float32 by default,
**Decision**, ``docs/gradmap.md``: their work is memory-bound on a CPU and float32 halves it)
whatever the environment's; observations are cast on the way in, actions on the way out, and
gradients pass through both casts.
"""

from __future__ import annotations

import math

import torch

from .fused_mlp import fused_maps, stacked_mlp

ACTIVATIONS = {"tanh": torch.tanh, "relu": torch.relu}
INITIAL_ACTION_BOUND = 0.95
"""Initial actions are fitted to the no-control actions clipped to ``[-0.95, 0.95]`` (module
docstring): ``tanh``'s slope there is ``1 - 0.95^2 = 0.0975``, a tenth of its slope at 0."""
OUTPUT_RIDGE = 0.01
"""Ridge weight on the output weights (not the bias) of the initial fit, per sample."""


def pre_activation(actions: torch.Tensor, bound: float = INITIAL_ACTION_BOUND) -> torch.Tensor:
    """The pre-``tanh`` targets ``atanh(clip(a, -bound, bound))`` of actions ``a`` (any shape,
    in ``[-1, 1]``), ``0 < bound < 1``."""
    if not 0 < bound < 1:
        raise ValueError(f"initial action bound must be in (0, 1), got {bound}")
    if not bool(torch.isfinite(actions).all()) or bool((actions.abs() > 1).any()):
        raise ValueError("initial actions must be finite and in [-1, 1]")
    return torch.atanh(actions.clamp(-bound, bound))


def ridge_fit(h: torch.Tensor, z: torch.Tensor, ridge: float = OUTPUT_RIDGE):
    """Per row ``k`` of a batch: ``w`` ``(k, H, 1)`` and ``b`` ``(k, 1, 1)`` minimising
    ``mean_s (h_s . w + b - z_s)^2 + ridge |w|^2`` for features ``h`` ``(k, S, H)`` and targets
    ``z`` ``(k, S)`` (centred, so the bias is not penalised; solved in float64). Features that
    never vary get weight 0."""
    h, z = h.double(), z.double()[..., None]
    h_mean, z_mean = h.mean(1, keepdim=True), z.mean(1, keepdim=True)
    hc, zc = h - h_mean, z - z_mean
    gram = hc.transpose(1, 2) @ hc / h.shape[1]
    eye = torch.eye(h.shape[-1], dtype=h.dtype, device=h.device)
    w = torch.linalg.solve(gram + ridge * eye, hc.transpose(1, 2) @ zc / h.shape[1])
    return w, z_mean - h_mean @ w


class StackedMLP(torch.nn.Module):
    """``n`` independent MLPs ``in_dim -> hidden... -> out_dim``, stacked; hidden layers use
    ``activation`` (``"tanh"`` or ``"relu"``), the output ``tanh`` (actions in ``(-1, 1)``), or
    nothing with ``squash=False`` (a critic's values).

    ``obs_mean``/``obs_std`` ``(n, in_dim)`` normalise the input (buffers). The normalisation is
    folded into the first layer by :meth:`maps`, ``W0' = W0 / std``, ``b0' = b0 - (mean / std)
    W0`` (``N F H`` work instead of ``S N F`` per sample), at each call unless the caller passes
    maps computed once (:meth:`StackedPolicy.bind`). Initialisation per agent, from
    ``generator``: weights uniform in ``±1/sqrt(fan_in)`` (PyTorch's ``Linear`` default), the
    output layer scaled by ``out_scale`` so initial actions are near 0.
    """

    def __init__(self, n: int, in_dim: int, hidden: tuple[int, ...], out_dim: int = 1, *,
                 generator: torch.Generator | None = None, dtype=torch.float64, device="cpu",
                 out_scale: float = 0.1, activation: str = "tanh", squash: bool = True):
        super().__init__()
        self.squash = squash
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
        sizes = (in_dim, *hidden, out_dim)
        self.n, self.sizes, self.activation = n, sizes, activation
        for l, (fi, fo) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
            bound = 1.0 / math.sqrt(fi) * (out_scale if l == len(sizes) - 2 else 1.0)
            w = (torch.rand(n, fi, fo, generator=generator, dtype=dtype) * 2 - 1) * bound
            b = (torch.rand(n, 1, fo, generator=generator, dtype=dtype) * 2 - 1) * bound
            self.register_parameter(f"w{l}", torch.nn.Parameter(w.to(device)))
            self.register_parameter(f"b{l}", torch.nn.Parameter(b.to(device)))
        self.register_buffer("obs_mean", torch.zeros(n, in_dim, dtype=dtype, device=device))
        self.register_buffer("obs_std", torch.ones(n, in_dim, dtype=dtype, device=device))

    @property
    def n_layers(self) -> int:
        return len(self.sizes) - 1

    def layers(self):
        return [(getattr(self, f"w{l}"), getattr(self, f"b{l}")) for l in range(self.n_layers)]

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The output layer's input ``(n, S, H)`` for raw agent-major observations ``(n, S,
        in_dim)``: the normalised observations through the hidden layers (the plain formula,
        not the fused kernel; for fitting the output layer, :meth:`StackedPolicy.fit_output`)."""
        h = (x.to(self.obs_mean) - self.obs_mean[:, None]) / self.obs_std[:, None]
        for w, b in self.layers()[:-1]:
            h = ACTIVATIONS[self.activation](torch.baddbmm(b, h, w))
        return h

    @torch.no_grad()
    def fit_output(self, x: torch.Tensor, z: torch.Tensor, ridge: float = OUTPUT_RIDGE) -> None:
        """Set the output layer (``out_dim = 1``) to the :func:`ridge_fit` of pre-activation
        targets ``z`` ``(n, S)`` on the :meth:`features` of observations ``x`` ``(n, S, in_dim)``."""
        w, b = ridge_fit(self.features(x), z, ridge)
        w_out, b_out = self.layers()[-1]
        w_out.copy_(w.to(w_out))
        b_out.copy_(b.to(b_out))

    def agent_major(self, obs: torch.Tensor) -> torch.Tensor:
        """``(..., n, in_dim)`` observations as one contiguous ``(n, S, in_dim)`` block: a
        strided view would make ``bmm`` loop over the agents, one GEMM each."""
        return obs.reshape(-1, self.n, self.sizes[0]).transpose(0, 1).contiguous()

    def maps(self) -> list:
        """The parameters as the fused kernel takes them (normalisation folded in,
        :func:`.fused_mlp.fused_maps`); differentiable. Compute once, evaluate many times."""
        return fused_maps(self.layers(), self.activation, self.obs_mean, self.obs_std)

    def forward_agent_major(self, x: torch.Tensor, maps: list | None = None) -> torch.Tensor:
        """Raw observations ``(n, S, in_dim)`` (agent-major) -> outputs ``(n, S, out_dim)``,
        through the fused kernel (:func:`.fused_mlp.stacked_mlp`: the same function, fewer
        passes over memory); ``maps`` from :meth:`maps` (default: computed now)."""
        return stacked_mlp(x, self.maps() if maps is None else maps, self.activation, self.squash)

    def forward(self, obs: torch.Tensor, maps: list | None = None) -> torch.Tensor:
        """``obs`` ``(..., n, in_dim)`` -> ``(..., n, out_dim)``."""
        y = self.forward_agent_major(self.agent_major(obs), maps)
        return y.transpose(0, 1).reshape(*obs.shape[:-2], self.n, self.sizes[-1])

    def extra_repr(self) -> str:
        return (f"n_agents={self.n}, sizes={self.sizes}, activation={self.activation}, "
                "share_params=False")


class StackedPolicy(torch.nn.Module):
    """Every agent's policy: one :class:`StackedMLP` per group of agents (contiguous slices).

    ``groups``: ``[(slice, hidden), ...]`` covering ``0..n_agents`` in order. ``forward(obs, t)``
    takes ``(..., N, F)`` observations and returns ``(..., N)`` actions; ``t`` and ``state`` are
    unused (each agent sees only its own observation, which holds the time of day) and accepted
    so the policy plugs into :func:`gridedge_env.rollout.rollout` directly.
    """

    def __init__(self, n_agents: int, obs_dim: int, groups, *, seed: int = 0,
                 dtype=torch.float32, device="cpu", out_scale: float = 0.1,
                 activation: str = "tanh"):
        super().__init__()
        starts = [sl.start for sl, _ in groups]
        if starts[0] != 0 or groups[-1][0].stop != n_agents or any(
                a[0].stop != b[0].start for a, b in zip(groups[:-1], groups[1:], strict=True)):
            raise ValueError(f"groups must cover agents 0..{n_agents} in order, got "
                             f"{[(sl.start, sl.stop) for sl, _ in groups]}")
        g = torch.Generator().manual_seed(int(seed))
        self.slices = [sl for sl, _ in groups]
        self.nets = torch.nn.ModuleList(
            StackedMLP(sl.stop - sl.start, obs_dim, tuple(hidden), 1, generator=g, dtype=dtype,
                       device=device, out_scale=out_scale, activation=activation)
            for sl, hidden in groups)
        self.n_agents, self.obs_dim, self.dtype = n_agents, obs_dim, dtype

    def forward(self, obs: torch.Tensor, t: int | None = None, state=None) -> torch.Tensor:
        return self._act(obs, [net.maps() for net in self.nets])

    def bind(self, grad: bool = True):
        """A callable like ``forward`` with the parameters prepared once (normalisation folded,
        :meth:`StackedMLP.maps`), for many calls on unchanged parameters:
        :func:`gridedge_env.rollout.rollout` binds a policy once per rollout instead of
        refolding at each of its steps. ``grad=False``: the parameters get no gradient (the
        observations still do), so the backward skips their work (GradMAP's environment
        gradient needs only ``dL/d delta``)."""
        with torch.set_grad_enabled(grad and torch.is_grad_enabled()):
            maps = [net.maps() for net in self.nets]
        return lambda obs, t=None, state=None: self._act(obs, maps)

    def _act(self, obs: torch.Tensor, maps: list) -> torch.Tensor:
        if obs.shape[-2:] != (self.n_agents, self.obs_dim):
            raise ValueError(f"observations must be (..., {self.n_agents}, {self.obs_dim}), got "
                             f"{tuple(obs.shape)}")
        x = obs.to(self.dtype)  # the policy's own precision; the environment keeps its own
        if len(self.nets) == 1:
            a = self.nets[0](x, maps[0])[..., 0]
        else:
            a = torch.cat([net(x[..., sl, :], m)[..., 0]
                           for sl, net, m in zip(self.slices, self.nets, maps, strict=True)],
                          dim=-1)
        return a.to(obs.dtype)

    def sample_major(self, obs: torch.Tensor) -> torch.Tensor:
        """Observations ``(..., N, F)`` as one contiguous ``(S, F, N)`` block in the policy's
        dtype, the layout the environment records them in (:class:`~gridedge_env.rollout.
        DayRollout`: no transpose here), from which :meth:`minibatch` draws samples by rows."""
        x = obs.reshape(-1, self.n_agents, self.obs_dim).transpose(1, 2)
        return x.to(self.dtype, memory_format=torch.contiguous_format)

    def minibatch(self, xs: torch.Tensor, idx: torch.Tensor | None = None) -> torch.Tensor:
        """Samples ``idx`` (default: all) of :meth:`sample_major`'s ``xs`` as agent-major
        ``(N, S_mb, F)`` for :meth:`forward_agent_major`: a row gather, then one transpose into
        ``(N, F, S_mb)`` memory, the fused kernel's own layout. (Gathering samples out of an
        agent-major block is a strided gather, 3x slower: measured in ``docs/gradmap.md``.)"""
        rows = xs if idx is None else xs.index_select(0, idx)
        return rows.permute(2, 1, 0).contiguous().transpose(1, 2)

    def agent_major(self, obs: torch.Tensor) -> torch.Tensor:
        """Observations ``(..., N, F)`` as agent-major ``(N, S, F)`` (all samples)."""
        return self.minibatch(self.sample_major(obs))

    def forward_agent_major(self, x: torch.Tensor) -> torch.Tensor:
        """Agent-major observations ``(N, S, F)`` -> actions ``(N, S)``."""
        if len(self.nets) == 1:
            return self.nets[0].forward_agent_major(x)[..., 0]
        return torch.cat([net.forward_agent_major(x[sl])[..., 0]
                          for sl, net in zip(self.slices, self.nets, strict=True)], dim=0)

    def set_normalisation(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        """Fix the observation normalisation, ``(N, F)`` each."""
        for sl, net in zip(self.slices, self.nets, strict=True):
            net.obs_mean.copy_(mean[sl])
            net.obs_std.copy_(std[sl])

    def fit_output(self, obs: torch.Tensor, actions: torch.Tensor,
                   bound: float = INITIAL_ACTION_BOUND, ridge: float = OUTPUT_RIDGE) -> None:
        """Start every agent at the actions it is shown (the initial policy, module docstring):
        each agent's output layer becomes the ridge fit of ``atanh(clip(actions, +-bound))`` on
        its last hidden features, over samples ``obs`` ``(..., N, F)`` and ``actions``
        ``(..., N)`` (no-control rollouts; the normalisation set first)."""
        if obs.shape[-2:] != (self.n_agents, self.obs_dim) or actions.shape != obs.shape[:-1]:
            raise ValueError(f"fit_output: observations (..., {self.n_agents}, {self.obs_dim}) "
                             f"and actions (..., {self.n_agents}) expected, got "
                             f"{tuple(obs.shape)} and {tuple(actions.shape)}")
        x = self.agent_major(obs)  # (N, S, F), the policy's dtype
        z = pre_activation(actions.detach(), bound).reshape(-1, self.n_agents).T  # (N, S)
        for sl, net in zip(self.slices, self.nets, strict=True):
            net.fit_output(x[sl], z[sl], ridge)

    def agent(self, i: int) -> dict[str, torch.Tensor]:
        """Agent ``i``'s own parameters and normalisation (``w0, b0, ..., obs_mean, obs_std``),
        detached copies: what a device runs (export)."""
        for sl, net in zip(self.slices, self.nets, strict=True):
            if sl.start <= i < sl.stop:
                j = i - sl.start
                out = {k: v[j].detach().clone() for k, v in net.named_parameters()}
                out.update(obs_mean=net.obs_mean[j].clone(), obs_std=net.obs_std[j].clone())
                return out
        raise IndexError(f"agent {i} out of range [0, {self.n_agents})")

    def extra_repr(self) -> str:
        return f"n_agents={self.n_agents}, groups={len(self.nets)}, share_params=False"


def kind_groups(kind_slices: dict, hidden: tuple[int, ...], hidden_by_kind: dict | None = None):
    """Groups for :class:`StackedPolicy` from the environment's kind slices (kind order): runs
    of consecutive kinds with the same hidden sizes merge; empty kinds are skipped."""
    groups: list = []
    for kind, sl in sorted(kind_slices.items(), key=lambda kv: kv[1].start):
        if sl.stop == sl.start:
            continue
        h = tuple((hidden_by_kind or {}).get(kind, hidden))
        if groups and groups[-1][1] == h and groups[-1][0].stop == sl.start:
            groups[-1] = (slice(groups[-1][0].start, sl.stop), h)
        else:
            groups.append((sl, h))
    return groups


def observation_stats(obs: torch.Tensor, min_std: float = 1e-3) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-agent, per-feature mean and std ``(N, F)`` of observations ``(..., N, F)``; a feature
    that hardly varies for an agent (a generator's device state, always 0) gets std 1, so it
    passes through unscaled rather than being blown up."""
    x = obs.reshape(-1, *obs.shape[-2:])
    mean, std = x.mean(0), x.std(0)
    return mean, torch.where(std > min_std, std, torch.ones_like(std))
