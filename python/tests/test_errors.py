"""Bad arguments and bad files raise Python's exceptions with the C++ library's messages:
std::invalid_argument -> ValueError, a missing file -> FileNotFoundError,
depass::FormatError -> depass.FormatError (a ValueError)."""

import shutil

import numpy as np
import pytest

import depass
from conftest import DATA_DIR

LLAMA = DATA_DIR / "families" / "llama"  # dim 64, 2 layers, vocab 412, hidden 96


@pytest.fixture(scope="module")
def model():
    return depass.load(str(LLAMA))


@pytest.fixture(scope="module")
def result(model):
    return model.decompose(list(range(1, 12)), keep_positions=[3, -1])


def raises(kind, message):
    """pytest.raises for an exact message."""
    return pytest.raises(kind, match="^" + __import__("re").escape(message) + "$")


def test_missing_files(tmp_path):
    with raises(FileNotFoundError, f"cannot open '{tmp_path}/nope.bin': no such file or directory"):
        depass.load(str(tmp_path / "nope.bin"))
    with raises(FileNotFoundError, f"cannot open tokenizer '{tmp_path}/tok.bin': no such file"):
        depass.load(str(LLAMA), tokenizer=str(tmp_path / "tok.bin"))


def test_malformed_file_is_a_format_error(tmp_path):
    copy = tmp_path / "llama"
    shutil.copytree(LLAMA, copy)
    weights = copy / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:5000])  # header intact, tensors cut off
    with pytest.raises(depass.FormatError) as info:
        depass.load(str(copy))
    assert "model.safetensors" in str(info.value)
    assert isinstance(info.value, ValueError)
    (copy / "config.json").write_text("{ not json")
    with pytest.raises(depass.FormatError, match="config.json"):
        depass.load(str(copy))


def test_bad_load_arguments():
    with raises(ValueError, "precision 'float16' is unknown (allowed: float64, float32)"):
        depass.load(str(LLAMA), precision="float16")


def test_bad_decompose_arguments(model):
    ids = list(range(1, 12))
    with raises(ValueError, "layer 7 is out of range [0, 2)"):
        model.decompose(ids, init=depass.Heads(7))
    with raises(ValueError, "temperature = 0.000000 must be a finite number > 0"):
        model.decompose(ids, temperature=0)
    with raises(ValueError, "mlp split 'bogus' is unknown (allowed: softmax, argmax, proportional, path)"):
        model.decompose(ids, split="bogus")
    with raises(ValueError, "chunk_size = -1 must be >= 0"):
        model.decompose(ids, chunk_size=-1)
    with raises(ValueError, "neuron 1 is selected twice"):
        model.decompose(ids, init=depass.Neurons(0, [1, 1]))
    with raises(ValueError, "neuron 96 is out of range [0, 96)"):
        model.decompose(ids, init=depass.Neurons(0, [96]))
    with raises(ValueError, "basis 0 has 3 rows; it must have the model width D = 64"):
        model.decompose(ids, init=depass.Subspaces("before_mlp 1", [np.ones((3, 2))]))
    with raises(ValueError, "keep_positions: position 11 is out of range [-11, 11)"):
        model.decompose(ids, keep_positions=[11])
    with raises(ValueError, "token sequence is empty"):
        model.decompose([])
    with pytest.raises(ValueError, match="^custom components do not sum to the hidden state at before attention 1"):
        model.decompose(ids, init=depass.Custom("before_attention 1", np.ones((2, 11, 64))))
    with raises(ValueError, "boundary 'middle' is not understood (allowed: 'output', 'before_attention L', 'before_mlp L')"):
        model.decompose(ids, end="middle")
    with raises(ValueError, "max_new = -1 must be >= 0"):
        model.generate(ids, -1)


def test_bad_readout_arguments(result):
    with raises(ValueError, "position 11 is out of range [0, 11)"):
        result.component_logits(11, 5)
    with raises(ValueError, "target token id 412 is out of range [0, 412)"):
        result.component_logits(10, 412)
    with raises(ValueError, "position 5 was not kept: this decomposition keeps positions {3, 10} "
                            "(DecomposeOptions::keep_positions)"):
        result.component_logits(5, 1)
    with raises(ValueError, "component 13 is out of range [0, 12)"):
        result.top_tokens(13, 10, 3)
    with raises(ValueError, "k = -1 must be >= 0"):
        result.top_tokens(0, 10, -1)


def test_wrong_types_are_type_errors(model):
    with pytest.raises(TypeError):
        model.decompose([1, 2], init="tokens")


def test_bad_boundaries_and_prompts_name_the_problem(model):
    with raises(ValueError, "boundary 'before_mlp x' is not understood (allowed: 'output', 'before_attention L', "
                            "'before_mlp L')"):
        depass.Tokens("before_mlp x")
    with raises(ValueError, "start boundary layer 5 is out of range [0, 2)"):
        model.decompose([1, 2, 3], init=depass.Tokens(depass.Boundary.before_mlp(5)))
    with raises(TypeError, "prompt must be a str or a sequence of token ids, got float"):
        model.decompose(3.5)
    with raises(TypeError, "end must be a depass.Boundary or a str such as 'before_mlp 1', got int"):
        model.decompose([1, 2, 3], end=3)
    with raises(ValueError, "trace must be (position, target) or (position, target, foil), got 1 values"):
        model.decompose([1, 2, 3], trace=(2,))
    with raises(ValueError, "token id 412 at position 1 is out of range [0, 412)"):
        model.decompose([1, 412])
