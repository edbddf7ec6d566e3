"""Custom components: a token-level split stopped at an inner boundary, fed back as a
custom split there and run on to the output, gives the token-level run's final scores
(DePass moves components block by block, so restarting at a boundary changes nothing;
the attention sink is off in both runs since it only applies to token-level runs)."""

import numpy as np
import pytest

import depass
from conftest import DATA_DIR


@pytest.mark.parametrize("precision,tol", [("float64", 1e-10), ("float32", 1e-4)])
def test_restarting_at_a_boundary_with_custom_components(precision, tol):
    model = depass.load(str(DATA_DIR / "families" / "llama"), precision=precision)
    ids = list(range(20, 31))
    whole = model.decompose(ids, bos_sink=False)
    half = model.decompose(ids, bos_sink=False, end="before_attention 1")
    custom = depass.Custom("before_attention 1", half.components, labels=half.labels)
    resumed = model.decompose(ids, init=custom, bos_sink=False)
    assert resumed.labels[: len(half.labels)] == half.labels
    M = whole.component_count
    for position, target in [(10, 3), (4, 100)]:
        expected = whole.component_logits(position, target)
        got = resumed.component_logits(position, target)[:M]
        scale = np.abs(expected).max()
        np.testing.assert_allclose(got, expected, rtol=0, atol=tol * scale)
