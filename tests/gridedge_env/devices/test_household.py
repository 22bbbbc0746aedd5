"""Household demand and PV: net power, reactive power, gradients, batching."""

import pytest
import torch

from gridedge_env.devices import household
from gridedge_env.devices.household import HouseholdConfig, HouseholdExog
from gridedge_env.devices.params import sample_household

F64 = torch.float64


def test_net_power_and_power_factor():
    params = sample_household(HouseholdConfig(pv_share=0.5), 10, seed=0, dtype=F64)
    demand = torch.rand(2, 10, dtype=F64, generator=torch.Generator().manual_seed(0))
    pv = torch.tensor([[0.0], [0.8]], dtype=F64)
    p, q = household.power(params, HouseholdExog(demand, pv))
    load = params.demand_scale * demand
    torch.testing.assert_close(p, load - params.pv_kwp * pv)
    assert (q >= 0).all()
    torch.testing.assert_close(q, load * (1 - params.pf**2).sqrt() / params.pf)
    no_pv = ~params.has_pv
    torch.testing.assert_close(p[:, no_pv], load[:, no_pv])
    assert (p[1, params.has_pv] < load[1, params.has_pv]).all()
    assert (household.pv_kw(params, HouseholdExog(demand, pv)) >= 0).all()


def test_gradcheck_power():
    params = sample_household(HouseholdConfig(), 6, seed=1, dtype=F64)
    g = torch.Generator().manual_seed(1)
    demand = torch.rand(2, 6, generator=g, dtype=F64).requires_grad_(True)
    pv = torch.rand(2, 1, generator=g, dtype=F64).requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda d, s: household.power(params, HouseholdExog(d, s)), (demand, pv)
    )


def test_batch_of_one_equals_slice():
    params = sample_household(HouseholdConfig(), 5, seed=2, dtype=F64)
    g = torch.Generator().manual_seed(2)
    demand, pv = torch.rand(3, 5, generator=g, dtype=F64), torch.rand(3, 1, generator=g)
    pv = pv.to(F64)
    full = household.power(params, HouseholdExog(demand, pv))
    for b in range(3):
        one = household.power(params, HouseholdExog(demand[b : b + 1], pv[b : b + 1]))
        for x, y in zip(one, full, strict=True):
            assert torch.equal(x, y[b : b + 1])


def test_config_validation():
    with pytest.raises(ValueError):
        HouseholdConfig(pv_share=1.5)
    with pytest.raises(ValueError):
        HouseholdConfig(pf=(0.9, 1.1))
