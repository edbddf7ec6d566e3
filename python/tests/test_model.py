"""Model-level calls against the independent goldens: the plain forward pass
(tests/golden/stories260K_logits.json, the bounds of the C++ Model test), greedy
generation and the tokenizer (stories260K_generate.json: llama2.c's known story), and
token ids given as a NumPy array."""

import numpy as np
import pytest

from conftest import read_golden


@pytest.mark.parametrize("precision,key,tol", [("float64", "logits_f64", 1e-10), ("float32", "logits_f32", 1e-4)])
def test_logits_match_the_reference(stories64, stories32, precision, key, tol):
    model = stories64 if precision == "float64" else stories32
    for case in read_golden("stories260K_logits.json")["cases"]:
        expected = np.array(case[key])
        logits = model.logits(case["ids"])
        assert logits.shape == expected.shape and logits.dtype == np.dtype(precision)
        assert np.abs(logits - expected).max() <= tol * np.abs(expected).max()


def test_tokenizer_and_greedy_generation(stories64):
    golden = read_golden("stories260K_generate.json")
    ids = stories64.tokenize(golden["prompt"])
    assert ids == golden["prompt_ids"]
    new = stories64.generate(golden["prompt"], len(golden["greedy_ids"]))
    assert new == golden["greedy_ids"]
    assert stories64.decode(golden["prompt_ids"] + new) == golden["greedy_text"]


def test_numpy_ids_are_token_ids(stories64):
    ids = stories64.tokenize("Once upon a time there was")
    as_list = stories64.decompose(ids)
    as_array = stories64.decompose(np.array(ids, dtype=np.int64))
    assert np.array_equal(as_list.components, as_array.components)


def test_reuse_freed_memory_keeps_the_numbers(stories64):
    """The allocator setting is taken (glibc) and later runs give the golden logits."""
    import platform

    import depass

    taken = depass.reuse_freed_memory()
    assert taken is (platform.libc_ver()[0] == "glibc")
    case = read_golden("stories260K_logits.json")["cases"][0]
    expected = np.array(case["logits_f64"])
    for _ in range(2):  # the second run reuses what the first freed
        assert np.abs(stories64.logits(case["ids"]) - expected).max() <= 1e-10 * np.abs(expected).max()
