"""Shared fixtures of the baseline tests."""

import pytest

from gridedge_env.registry import env_params


@pytest.fixture(scope="module")
def env():
    """The small scenario every baseline is tested on."""
    return env_params("ieee13-50-v0")
