"""Every DePass option path of tests/golden/options_<model>.json (the independent float64
reference of tools/reference/) through the Python API, in float64 and float32: member,
bias and chunk-residual scores, real logits, top tokens, and the values at inner end
boundaries. Tolerances: float64 1e-9 of the readout's scale (the C++ test allows 1e-8),
float32 the C++ OptionGoldens test's."""

import json
import shutil

import numpy as np
import pytest

import depass
from conftest import DATA_DIR, GOLDEN_DIR, read_golden, require_model

GOLDENS = sorted(p.name for p in GOLDEN_DIR.glob("options_*.json"))
_models = {}


def golden_model(golden, precision, tmp_path_factory):
    """The golden's checkpoint (tests/data or the model directory), with its config
    overrides applied to a copy; loaded once per precision."""
    key = (golden["model"], json.dumps(golden.get("config_overrides")), precision)
    if key not in _models:
        if golden["source"] == "data":
            path = DATA_DIR / golden["model"]
        else:
            path = require_model(golden["model"])
        if "config_overrides" in golden:
            copy = tmp_path_factory.mktemp("override")
            config = json.loads((path / "config.json").read_text())
            config.update(golden["config_overrides"])
            (copy / "config.json").write_text(json.dumps(config))
            for name in ("model.safetensors", "tokenizer.json", "tokenizer_config.json"):
                if (path / name).exists():
                    shutil.copy(path / name, copy / name)
            path = copy
        _models[key] = depass.load(str(path), precision=precision)
    return _models[key]


def make_init(golden, init):
    kind = init["kind"]
    if kind == "tokens":
        return depass.Tokens(init["start"])
    if kind == "heads":
        return depass.Heads(init["layer"])
    if kind == "neurons":
        return depass.Neurons(init["layer"], init["neurons"])
    if kind == "module":
        return depass.Module(init["layer"], init["site"])
    assert kind == "subspace"
    if "projections" in init:  # P = left @ right.T, the D x k factors of each projection
        ps = [golden["projections"][i] for i in init["projections"]]
        return depass.Subspaces(init["start"], [np.array(p["left"]) @ np.array(p["right"]).T for p in ps],
                                projections=True)
    return depass.Subspaces(init["start"], [np.array(golden["bases"][i]) for i in init["bases"]])


def tolerance(precision, split):
    if precision == "float64":
        return 1e-9
    return 2e-3 if split == "proportional" else 2e-4


def check_readouts(result, case, tol_rel):
    K = case["members"]
    chunked = case["options"]["chunk_size"] > 0
    assert result.component_count == K + 1 + (1 if chunked else 0)
    assert result.chunk_count == case["chunks"]
    for r in case["readouts"]:
        scores = result.component_logits(r["position"], r["target"])
        expected = np.array(r["scores"])
        tol = tol_rel * max([abs(r["logit"])] + list(np.abs(expected)))
        assert abs(result.logit(r["position"], r["target"]) - r["logit"]) <= tol
        np.testing.assert_allclose(scores[:K], expected[:K], rtol=0, atol=tol)
        assert abs(scores[result.bias_component] - r["bias"]) <= tol
        if chunked:
            assert abs(scores[result.chunk_residual_component] - r["chunk_residual"]) <= tol


def check_top_tokens(result, case):
    top, K = case["top_tokens"], case["members"]
    for m, expected in enumerate(top["ids"]):
        component = m if m < K else result.bias_component
        if not expected:
            assert np.all(result.components[component, top["position"]] == 0)
            continue
        ids = [t for t, _ in result.top_tokens(component, top["position"], top["k"])]
        assert ids == expected, f"top tokens of component {component}"


def check_end_values(result, golden, case, tol_rel):
    K = case["members"]
    probe = np.array(golden["probe"])
    C = result.components.astype(np.float64)
    for v in case["end_values"]:
        p = v["position"]
        tol = tol_rel * max(1.0, abs(v["state_sum"]), abs(v["state_probe"]))
        assert abs(result.state[p].sum() - v["state_sum"]) <= tol
        assert abs(result.state[p].astype(np.float64) @ probe - v["state_probe"]) <= tol
        np.testing.assert_allclose(C[:K, p].sum(axis=1), v["sum"], rtol=0, atol=tol)
        np.testing.assert_allclose(C[:K, p] @ probe, v["probe"], rtol=0, atol=tol)
        assert abs(C[result.bias_component, p].sum() - v["bias_sum"]) <= tol
        assert abs(C[result.bias_component, p] @ probe - v["bias_probe"]) <= tol


@pytest.mark.parametrize("precision", ["float64", "float32"])
@pytest.mark.parametrize("name", GOLDENS)
def test_option_goldens(name, precision, tmp_path_factory):
    golden = read_golden(name)
    model = golden_model(golden, precision, tmp_path_factory)
    for case in golden["cases"]:
        o = case["options"]
        result = model.decompose(golden["prompts"][case["prompt"]], init=make_init(golden, case["init"]),
                                 split=o["split"], temperature=o["temperature"], bos_sink=o["bos_sink"],
                                 sink_ratio=o.get("sink_ratio", 0.0), chunk_size=o["chunk_size"], end=o["end"])
        tol = tolerance(precision, o["split"])
        try:
            if "end_values" in case:
                check_end_values(result, golden, case, tol)
            else:
                check_readouts(result, case, tol)
            if "top_tokens" in case and precision == "float64":
                check_top_tokens(result, case)
        except AssertionError as e:
            raise AssertionError(f"case {case['name']!r}: {e}") from e
