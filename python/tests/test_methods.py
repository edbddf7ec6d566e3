"""The attribution methods and the token faithfulness protocol from Python
(Model.attribute, Model.faithfulness): the same numbers as the C++ API bit for bit (the
depass CLI's --method output, one thread each), the library's invariants (IG's recorded
completeness gap, DePass's shares summing to the logit), and bad arguments as ValueError."""

import subprocess

import numpy as np
import pytest

import depass
from conftest import DEMO_PROMPT


def cli_scores(cli, tmp_path, command, precision, extra):
    out = tmp_path / "s.npy"
    subprocess.run([cli, command, "--model", str(extra.pop("model")), "--prompt", DEMO_PROMPT, "--precision", precision,
                    "--threads", "1", "--format", "npy", "--output", str(out), "--quiet"] + extra["args"],
                   check=True, capture_output=True)
    return np.load(out).ravel()


@pytest.mark.parametrize("precision,flag", [("float64", "double"), ("float32", "float")])
@pytest.mark.parametrize("command,args,kwargs", [
    ("tokens", ["--method", "ig", "--steps", "20"], {"method": "ig", "steps": 20}),
    ("tokens", ["--method", "input-x-grad"], {"method": "input-x-grad"}),
    ("tokens", ["--method", "occlusion", "--objective", "logprob"], {"method": "occlusion", "objective": "logprob"}),
    ("tokens", ["--method", "rollout"], {"method": "rollout"}),
    ("heads", ["--method", "atp"], {"method": "atp", "level": "heads"}),
    ("heads", ["--method", "depass", "--mlp-split", "path"], {"method": "depass", "level": "heads", "split": "path"}),
    ("neurons", ["--method", "ablation", "--layer", "2"], {"method": "ablation", "level": "neurons", "layer": 2}),
])
def test_methods_equal_the_cli(cli, stories_path, tmp_path, one_thread, precision, flag, command, args, kwargs):
    expected = cli_scores(cli, tmp_path, command, flag, {"model": stories_path, "args": args})
    model = depass.load(stories_path, precision=precision)
    scores = model.attribute(DEMO_PROMPT, **kwargs).scores
    assert scores.dtype == (np.float64 if precision == "float64" else np.float32)
    assert np.array_equal(expected[:len(scores)], scores.astype(np.float64))  # every bit


def test_attribution_records_what_the_method_computed(stories64):
    ids = stories64.tokenize(DEMO_PROMPT)
    target = int(np.argmax(stories64.logits(ids)[-1]))
    ig = stories64.attribute(ids, method="ig", steps=8)
    assert ig.method == "ig" and ig.level == "tokens" and ig.layer is None
    assert ig.labels[0] == "pos 0" and len(ig.scores) == len(ids)
    # The gap the library records is sum(scores) - (f(x) - f(baseline)), whatever its size.
    assert ig.completeness_gap == pytest.approx(ig.scores.sum() - (ig.value - ig.baseline_value), abs=1e-9)
    shares = stories64.attribute(ids, method="depass", target=target)
    logit = stories64.logits(ids)[-1, target]
    assert shares.scores.sum() + sum(shares.extra_scores) == pytest.approx(logit, rel=1e-9)
    assert "bias" in shares.extra_labels
    contrast = stories64.attribute(ids, method="depass", target=target, objective="contrast", foil=target + 1)
    assert contrast.scores.sum() + sum(contrast.extra_scores) == pytest.approx(
        logit - stories64.logits(ids)[-1, target + 1], rel=1e-9)
    neurons = stories64.attribute(ids, method="norm", level="neurons", layer=1, position=3)
    assert neurons.layer == 1 and len(neurons.scores) == stories64.config["hidden_dim"]


def test_faithfulness_curves_follow_the_protocol(stories64):
    ids = stories64.tokenize(DEMO_PROMPT)
    samples = stories64.faithfulness(ids, methods=["depass", "occlusion"], percents=[10, 50, 100],
                                     scores=np.arange(len(ids), dtype=np.float64))
    assert [s["method"] for s in samples] == ["depass", "occlusion", "scores"]
    for s in samples:
        assert s["error"] is None
        assert len(s["disrupt"]) == len(s["recover"]) == 3
        assert 0 < s["p_clean"] <= 1
    # Scores rising with the position rank the last tokens first (BOS is never ranked).
    assert samples[2]["ranking"][:3] == [len(ids) - 1, len(ids) - 2, len(ids) - 3]
    # Disrupting 100% leaves BOS alone, whatever the ranking: every method's last point agrees.
    assert len({s["disrupt_probability"][-1] for s in samples}) == 1
    direct = stories64.attribute(ids, method="occlusion")
    assert np.array_equal(np.asarray(samples[1]["scores"]), direct.scores)


@pytest.mark.parametrize("kwargs,message", [
    ({"method": "nope"}, "method 'nope' is unknown"),
    ({"level": "neurons"}, "level 'neurons' needs layer"),
    ({"level": "tokens", "layer": 1}, "layer applies to level 'neurons'"),
    ({"level": "rows"}, "level 'rows' is unknown"),
    ({"objective": "contrast"}, "objective 'contrast' needs foil"),
    ({"foil": 3}, "foil is given, so objective must be 'contrast'"),
    ({"method": "ig", "quadrature": "simpson"}, "quadrature 'simpson' is unknown"),
    ({"method": "atp"}, "does not apply to tokens"),
    ({"position": 99}, "position 99 is out of range"),
    ({"target": 100000}, "100000"),
])
def test_bad_method_arguments_raise_value_error(stories64, kwargs, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        stories64.attribute(DEMO_PROMPT, **kwargs)
