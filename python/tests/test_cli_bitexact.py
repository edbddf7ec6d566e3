"""Same numbers as the C++ API, bit for bit: the depass CLI (C++) writes the components
tensor (--components, float64 .npy: exact for both precisions) and the token scores
(--format npy) of a token-level run; the Python module's must be identical, not close.
Both run on one thread so that no reduction order differs. Needs the CLI of the same
build (ctest passes DEPASS_CLI when the examples are built)."""

import subprocess

import numpy as np
import pytest

import depass
from conftest import DEMO_PROMPT


@pytest.mark.parametrize("precision,flag", [("float64", "double"), ("float32", "float")])
@pytest.mark.parametrize("extra,kwargs", [([], {}),
                                          (["--mlp-split", "argmax", "--no-bos-sink"], {"split": "argmax", "bos_sink": False})])
def test_token_attribution_equals_the_cli(cli, stories_path, tmp_path, one_thread, precision, flag, extra, kwargs):
    components, scores = tmp_path / "c.npy", tmp_path / "s.npy"
    subprocess.run([cli, "tokens", "--model", stories_path, "--prompt", DEMO_PROMPT, "--precision", flag,
                    "--threads", "1", "--components", str(components), "--format", "npy", "--output", str(scores),
                    "--quiet"] + extra, check=True, capture_output=True)
    model = depass.load(stories_path, precision=precision)
    result = model.decompose(DEMO_PROMPT, **kwargs)
    expected = np.load(components)
    assert expected.shape == result.components.shape
    assert np.array_equal(expected, result.components.astype(np.float64))  # every bit
    last = result.positions - 1
    target = int(np.argmax(result.logits(last)))
    assert np.array_equal(np.load(scores), result.component_logits(last, target)[:last + 1].astype(np.float64))
