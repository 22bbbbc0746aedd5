"""Shared fixtures: the reference models in ../shared (tests skip what needs them when absent)."""

from pathlib import Path

import pytest

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
