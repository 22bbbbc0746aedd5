"""``VecEnv.step``'s boundary: numpy actions, and clear errors for bad shapes and dtypes."""

import numpy as np
import pytest
import torch

from gridedge_env.envs import make_vec

B, N = 3, 50


@pytest.fixture(scope="module")
def vec():
    return make_vec("ieee13-50-v0", num_envs=B)


def test_numpy_and_float32_actions_match_float64_tensors(vec):
    act = np.linspace(-1, 1, B * N).reshape(B, N)
    vec.reset(seed=0)
    ref = vec.step(torch.as_tensor(act))
    for given in (act, act.astype(np.float32), torch.as_tensor(act, dtype=torch.float32)):
        vec.reset(seed=0)
        out = vec.step(given)
        assert out.reward.dtype == torch.float64
        torch.testing.assert_close(out.reward, ref.reward, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("shape, match", [
    ((B + 1, N), rf"\({B}, {N}\).*\({B + 1}, {N}\).*{B + 1} days, not num_envs={B}"),
    ((B, N - 1), rf"\({B}, {N}\).*\({B}, {N - 1}\).*{N - 1} agents, not n_agents={N}"),
    ((B, N, 1), rf"\({B}, {N}\).*\({B}, {N}, 1\).*3 dimensions"),
    ((B * N,), rf"\({B}, {N}\).*\({B * N},\).*1 dimensions"),
])
def test_wrong_shape_names_expected_and_given(vec, shape, match):
    vec.reset(seed=0)
    with pytest.raises(ValueError, match=r"\(num_envs, n_agents\) = " + match):
        vec.step(torch.zeros(shape, dtype=torch.float64))
    with pytest.raises(ValueError, match=match):
        vec.step(np.zeros(shape))


@pytest.mark.parametrize("bad, match", [
    (torch.zeros(B, N, dtype=torch.bool), "dtype torch.bool"),
    (torch.zeros(B, N, dtype=torch.complex128), "dtype torch.complex128"),
    (np.zeros((B, N), dtype=bool), "numpy array of dtype bool"),
    (np.zeros((B, N), dtype=object), "numpy array of dtype object"),
    ([[0.0] * N] * B, "torch.Tensor or numpy array .* got list"),
])
def test_wrong_type_or_dtype_is_a_type_error(vec, bad, match):
    vec.reset(seed=0)
    with pytest.raises(TypeError, match=match):
        vec.step(bad)


def test_float32_env_takes_float64_actions():
    vec32 = make_vec("ieee13-50-v0", num_envs=2, dtype=torch.float32)
    vec32.reset(seed=0)
    out = vec32.step(np.zeros((2, N)))  # was: "s_kva must have dtype torch.complex64 ..."
    assert out.reward.dtype == torch.float32 and torch.isfinite(out.reward).all()
