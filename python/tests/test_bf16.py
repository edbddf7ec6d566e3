"""decompose(..., gemm_precision="bf16"): the bf16 mode from Python (docs/performance.md "bf16
mode"), against the same model's float32 run, and its refusals."""

import numpy as np
import pytest

import depass

from conftest import DEMO_PROMPT


def test_bf16_scores_are_close_to_float32_and_report_their_cost(stories32, one_thread):
    if not depass.bf16_available():
        with pytest.raises(ValueError, match="needs oneDNN"):
            stories32.decompose(DEMO_PROMPT, gemm_precision="bf16")
        return
    native = stories32.decompose(DEMO_PROMPT)
    bf16 = stories32.decompose(DEMO_PROMPT, gemm_precision="bf16")
    assert native.gemm_kernel == ""
    assert bf16.gemm_kernel != ""
    p = native.positions - 1
    target = int(np.argmax(stories32.logits(DEMO_PROMPT)[p]))
    a, b = native.component_logits(p, target), bf16.component_logits(p, target)
    error = np.abs(a - b).max() / np.abs(a).max()
    assert 0 < error <= 2e-2  # bf16 products differ, within the mode's stated error
    top = lambda s: set(np.argsort(-s)[:10].tolist())  # noqa: E731
    assert len(top(a) & top(b)) >= 9
    # What the mode costs: components vs the real float32 state at every boundary.
    assert len(bf16.completeness) == len(native.completeness)
    for check in bf16.completeness:
        assert check["residual_max_abs"] <= 2e-2 * max(1.0, check["state_max_abs"])
    assert bf16.max_relative_residual() > native.max_relative_residual()


def test_bf16_refusals(stories64, stories32):
    with pytest.raises(ValueError, match="gemm_precision 'half' is unknown"):
        stories32.decompose(DEMO_PROMPT, gemm_precision="half")
    if depass.bf16_available():
        with pytest.raises(ValueError, match="float"):
            stories64.decompose(DEMO_PROMPT, gemm_precision="bf16")
