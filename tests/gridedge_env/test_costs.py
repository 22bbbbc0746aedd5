"""Costs and constraints: the voltage unbalance factor, the energy bill."""

import numpy as np
import torch

from gridedge_env.costs import energy_bill, voltage_unbalance


def test_voltage_unbalance_matches_the_sequence_definition():
    a = np.exp(2j * np.pi / 3)
    balanced = torch.tensor([[1.0, a * a, a]], dtype=torch.complex128) * 2400
    bp = torch.tensor([[0, 1, 2]])
    assert float(voltage_unbalance(balanced, bp).abs().max()) < 1e-14
    g = torch.Generator().manual_seed(0)
    v = torch.complex(torch.randn(5, 9, generator=g, dtype=torch.float64),
                      torch.randn(5, 9, generator=g, dtype=torch.float64))
    bp = torch.tensor([[0, 4, 8], [3, 1, 2], [5, 6, 7]])
    vn = v.numpy()[:, bp.numpy()]
    ref = (np.abs(vn[..., 0] + a * a * vn[..., 1] + a * vn[..., 2])
           / np.abs(vn[..., 0] + a * vn[..., 1] + a * a * vn[..., 2]))
    np.testing.assert_allclose(voltage_unbalance(v, bp).numpy(), ref, rtol=1e-12)
    # the interleaved real form (compiled code) gives the same
    np.testing.assert_allclose(voltage_unbalance(torch.view_as_real(v), bp).numpy(), ref,
                               rtol=1e-12)
    assert voltage_unbalance(v, torch.zeros(0, 3, dtype=torch.long)).shape == (5, 0)


def test_energy_bill_imports_at_price_exports_at_export_price():
    p = torch.tensor([[2.0, -3.0, 0.0]], dtype=torch.float64)
    bill = energy_bill(p, torch.tensor([[0.3]]), torch.tensor([[0.1]]), 0.5)
    torch.testing.assert_close(bill, torch.tensor([[0.3, -0.15, 0.0]], dtype=torch.float64))
