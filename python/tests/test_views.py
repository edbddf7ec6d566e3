"""The arrays a Decomposition hands out view its C++ tensors: no copy, read-only, and the
decomposition (and its model) stay alive as long as a view does."""

import gc

import numpy as np
import pytest

import depass
from conftest import DATA_DIR


@pytest.fixture(scope="module", params=["float64", "float32"])
def model(request):
    return depass.load(str(DATA_DIR / "families" / "llama"), precision=request.param)


def test_components_view_shares_the_result_memory(model):
    result = model.decompose(list(range(1, 12)))
    a, b = result.components, result.components
    assert a.dtype == np.dtype(model.precision)
    assert a.shape == (result.component_count, result.positions, model.config["dim"])
    assert np.shares_memory(a, b)  # both views are the same C++ buffer, not two copies
    assert a.base is result and b.base is result
    assert a.flags.c_contiguous and not a.flags.owndata
    state = result.state
    assert state.shape == (result.positions, model.config["dim"]) and state.base is result
    assert not state.flags.owndata


def test_views_are_read_only(model):
    result = model.decompose(list(range(1, 12)))
    c, x = result.components, result.state
    assert not c.flags.writeable and not x.flags.writeable
    with pytest.raises(ValueError, match="read-only"):
        c[0, 0, 0] = 1.0
    with pytest.raises(ValueError, match="read-only"):
        x[0, 0] = 1.0
    with pytest.raises(ValueError):
        c.flags.writeable = True  # the base does not own writable memory


def test_view_keeps_the_decomposition_alive(model):
    result = model.decompose(list(range(1, 12)))
    view = result.components
    before = view.copy()
    scores = result.component_logits(10, 5)
    del result, model
    gc.collect()
    # Still the same numbers (freed memory would have been reused by these allocations).
    _ = [np.random.rand(50_000) for _ in range(20)]
    np.testing.assert_array_equal(view, before)
    assert view.base.component_logits(10, 5).tolist() == scores.tolist()


def test_readouts_agree_with_the_view(model):
    """component_logits reads the same tensor the view shows: the sum over components of
    the view is the real final-normed state (losslessness), and each component's logits
    row is its view row times the unembedding (checked through the real logit's sum)."""
    result = model.decompose(list(range(1, 12)))
    c = result.components.astype(np.float64)
    tol = 1e-12 if model.precision == "float64" else 1e-4
    np.testing.assert_allclose(c.sum(axis=0), result.state, rtol=0, atol=tol * np.abs(result.state).max())
    for p, t in [(10, 5), (3, 200)]:
        assert abs(result.component_logits(p, t).sum() - result.logit(p, t)) <= tol * 100
