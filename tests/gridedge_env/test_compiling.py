"""compile_own: each caller's compiled copy has its own dynamo recompile budget."""

import pytest
import torch
from torch._dynamo.utils import counters

from gridedge_env.compiling import compile_own


def _graphs() -> int:
    return counters["stats"]["unique_graphs"]


@pytest.mark.slow
@pytest.mark.parametrize("own", [True, False])
def test_a_full_recompile_budget_does_not_spill_over_to_another_copy(own):
    def doubling(x, k: int):  # every k is a new compiled version (the loop unrolls)
        for _ in range(k):
            x = x * 2 + 1
        return x

    first, second = ((compile_own(doubling), compile_own(doubling)) if own else
                     (torch.compile(doubling), torch.compile(doubling)))
    x = torch.ones(3)
    for k in range(torch._dynamo.config.recompile_limit):
        first(x, k)
    before = _graphs()
    torch.testing.assert_close(second(x, 20), doubling(x, 20))
    # compile_own: the second copy compiles; a shared code object is out of budget (eager)
    assert (_graphs() == before + 1) == own
