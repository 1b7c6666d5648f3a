"""Test setup: import the package from this source tree (unless it is
installed and NNMOD_TEST_INSTALLED is set), and find the repository's files."""
import os
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.normpath(os.path.join(HERE, "..", "..", ".."))
if not os.environ.get("NNMOD_TEST_INSTALLED"):
    sys.path.insert(0, os.path.normpath(os.path.join(HERE, "..")))


@pytest.fixture
def repo():
    return REPO


@pytest.fixture
def mlp_path():
    return os.path.join(REPO, "examples", "manifests", "mlp.json")


@pytest.fixture
def golden():
    return os.path.join(REPO, "tests", "golden")


@pytest.fixture
def ctx():
    """A private context, checked for leaked tensors and modules at the end."""
    import gc
    import nnmod
    c = nnmod.Context()
    yield c
    gc.collect()
    s = c.stats()
    assert s["live_modules"] == 0, s
    assert s["live_tensors"] == 0, s
