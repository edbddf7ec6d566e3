"""decompose(..., trace=(position, target[, foil])) records the C++ LogitTrace: per
boundary, each component's logit lens. Its invariants: each row sums to the real state's
lens logit, and at the output the row is the decomposition's final scores."""

import numpy as np

import depass
from conftest import DATA_DIR


def test_trace_rows_sum_to_the_lens_and_end_at_the_scores():
    for precision, tol in [("float64", 1e-12), ("float32", 1e-4)]:
        model = depass.load(str(DATA_DIR / "families" / "qwen2"), precision=precision)  # biases: a bias component
        ids = list(range(5, 17))
        result = model.decompose(ids, trace=(11, 7))
        t = result.trace
        L = model.config["n_layers"]
        assert t["boundaries"][0] == "before attention 0" and t["boundaries"][-1] == "output"
        assert len(t["boundaries"]) == 2 * L + 1 and t["scores"].shape == (2 * L + 1, result.component_count)
        scale = np.abs(t["scores"]).max()
        np.testing.assert_allclose(t["scores"].sum(axis=1), t["lens"], rtol=0, atol=tol * scale)
        np.testing.assert_allclose(t["scores"][-1], result.component_logits(11, 7), rtol=0, atol=tol * scale)
        contrast = model.decompose(ids, trace=(11, 7, 9)).trace
        final = result.component_logits(11, 7) - result.component_logits(11, 9)
        np.testing.assert_allclose(contrast["scores"][-1], final, rtol=0, atol=tol * scale)
        assert model.decompose(ids).trace is None
