"""Shared fixtures: the reference models in ../shared (tests skip what needs them when absent),
and the ``device`` every device-aware test runs on (CPU always, CUDA where available)."""

from pathlib import Path

import pytest
import torch

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
FEEDER_MODELS = SHARED / "data" / "feeders"
PROFILES = SHARED / "data" / "profiles"


@pytest.fixture(scope="session")
def feeder_models() -> Path:
    if not FEEDER_MODELS.is_dir():
        pytest.skip("reference OpenDSS models (../shared/data/feeders) not available")
    return FEEDER_MODELS


@pytest.fixture(scope="session")
def profiles_dir() -> Path:
    if not PROFILES.is_dir():
        pytest.skip("reference profiles (../shared/data/profiles) not available")
    return PROFILES


@pytest.fixture(params=["cpu", "cuda"])
def device(request) -> torch.device:
    """The torch device a test runs on: ``cpu``, and ``cuda`` where ``torch.cuda.is_available()``
    (skipped otherwise). Tests taking it are marked ``gpu_check`` (``scripts/gpu_check.sh``
    runs them with ``-m gpu_check -k cuda``; docs/gpu.md)."""
    if request.param == "cuda" and not torch.cuda.is_available():
        pytest.skip("CUDA not available here (torch.cuda.is_available() is False)")
    return torch.device(request.param)


def pytest_collection_modifyitems(items) -> None:
    """Mark every test that takes the ``device`` fixture ``gpu_check``."""
    for item in items:
        if "device" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.gpu_check)
