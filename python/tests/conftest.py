"""Shared fixtures of the depass Python tests (run by ctest as `python.pytest`).

Models: tests/data/families/* are committed; the real checkpoints (stories260K, ...) come
from the model directory: $DEPASS_MODEL_DIR, else the one CMake chose
($DEPASS_DEFAULT_MODEL_DIR), else <repo>/models, else <repo>/../shared/models. A missing
model skips the test, or fails it when DEPASS_REQUIRE_MODELS=1 (as the C++ tests do).
"""

import json
import os
import pathlib

import pytest

SOURCE_DIR = pathlib.Path(os.environ.get("DEPASS_SOURCE_DIR", pathlib.Path(__file__).resolve().parents[2]))
GOLDEN_DIR = SOURCE_DIR / "tests" / "golden"
DATA_DIR = SOURCE_DIR / "tests" / "data"


def model_dir():
    for candidate in (os.environ.get("DEPASS_MODEL_DIR"), os.environ.get("DEPASS_DEFAULT_MODEL_DIR"),
                      SOURCE_DIR / "models", SOURCE_DIR.parent / "shared" / "models"):
        if candidate and (pathlib.Path(candidate) / "stories260K").is_dir():
            return pathlib.Path(candidate)
    return pathlib.Path(os.environ.get("DEPASS_MODEL_DIR") or SOURCE_DIR / "models")


def require_model(relative):
    """Path of a model file under the model directory; skips (or fails) when it is missing."""
    path = model_dir() / relative
    if not path.exists():
        message = f"model file {path} not found"
        if os.environ.get("DEPASS_REQUIRE_MODELS") == "1":
            pytest.fail(message + ", and DEPASS_REQUIRE_MODELS=1 says the suite must be complete")
        pytest.skip(message + " (make models, or set DEPASS_MODEL_DIR)")
    return path


def read_golden(name):
    with open(GOLDEN_DIR / name) as f:
        return json.load(f)


@pytest.fixture(scope="session")
def stories_path():
    return str(require_model("stories260K/stories260K.bin"))


@pytest.fixture(scope="session")
def stories64(stories_path):
    import depass
    return depass.load(stories_path)


@pytest.fixture(scope="session")
def stories32(stories_path):
    import depass
    return depass.load(stories_path, precision="float32")


#: The prompt of `make demo` and of the README: 22 tokens with BOS.
DEMO_PROMPT = "Once upon a time there was a little girl named Lily. She loved to play with her"


@pytest.fixture(scope="session")
def cli():
    """The depass CLI of the same build (ctest passes DEPASS_CLI when the examples are built)."""
    path = os.environ.get("DEPASS_CLI")
    if not path:
        pytest.skip("DEPASS_CLI is not set (configure with DEPASS_BUILD_EXAMPLES=ON to build the CLI)")
    if not os.path.exists(path):
        pytest.fail(f"DEPASS_CLI={path} does not exist: build the depass_cli target")
    return path


@pytest.fixture
def one_thread():
    """One thread for the test, so that no reduction order differs from the CLI's."""
    import depass
    before = depass.threads()
    depass.set_threads(1)
    yield
    depass.set_threads(before)
