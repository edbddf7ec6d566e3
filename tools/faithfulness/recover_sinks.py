#!/usr/bin/python3
"""Diagnostic for issue #16 (docs/faithfulness.md, "Split rules"): does DePass lose the
recover curve because it gives no share to the tokens that route attention? Recover is
run twice for each method: as specified (keep BOS and the top p%), and keeping in
addition every position that some layer's real attention treats as a sink (received
attention >= RATIO x uniform over >= 8 later queries, the rule of --sink-ratio), the same
positions for every method. If the gap to gradient norm closes when the sinks are kept,
the loss is about routing tokens, not about the content tokens DePass ranks.

    /usr/bin/python3 tools/faithfulness/recover_sinks.py [--limit 100] [--ratio 4]

Scores come from the CLI (`depass tokens --batch`, DePass with --mlp-split path and
softmax, gradient norm); the edits and probabilities from the float64 reference model of
tools/reference/llama.py; the metric from tools/faithfulness/metrics.py."""
import argparse
import json
import os
import subprocess
import sys
import tempfile

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tools", "reference"))
sys.path.insert(0, HERE)
import families  # noqa: E402
import llama  # noqa: E402
import metrics  # noqa: E402


def sink_positions(model, ids, ratio):
    """Positions that some layer's attention gives >= ratio x uniform attention."""
    cfg, N = model["cfg"], len(ids)
    x = model["embed"][torch.tensor(ids)].clone()
    cos, sin = llama.rope_cos_sin(N, cfg["head_dim"], cfg["rope_theta"], torch.float64)
    found = set()
    for L in model["layers"]:
        A, v = llama.attention_probs(llama.rmsnorm(x, L["att_norm"], cfg["eps"]), L, cfg, cos, sin)
        found.update(families.attention_sinks(A, ratio))
        x = x + llama.attention_mix(A, v, cfg) @ L["wo"].T
        h = llama.rmsnorm(x, L["ffn_norm"], cfg["eps"])
        x = x + (llama.silu(h @ L["w1"].T) * (h @ L["w3"].T)) @ L["w2"].T
    return found


def probability(model, ids, target):
    return torch.softmax(llama.forward(model, ids)[-1], -1)[target].item()


def scores_by_method(depass, model_path, records, split):
    with tempfile.NamedTemporaryFile("w", suffix=".jsonl", delete=False) as f:
        for r in records:
            f.write(json.dumps({"ids": r["ids"], "target": r["target"]}) + "\n")
    out = subprocess.run([depass, "tokens", "--model", model_path, "--batch", f.name, "--method", "depass,grad-norm",
                          "--mlp-split", split, "--no-progress", "--precision", "double"],
                         check=True, capture_output=True, text=True).stdout
    os.unlink(f.name)
    docs = sorted((json.loads(l) for l in out.splitlines()), key=lambda d: d["line"])
    return [{m["method"]: m["scores"] for m in d["methods"]} for d in docs]


def recover_area(model, records, scores, sinks):
    per_sample = []
    for r, s, extra in zip(records, scores, sinks):
        p_clean = probability(model, r["ids"], r["target"])
        row = {}
        for p in metrics.PERCENTS:
            keep = set(metrics.selected(s, p)) | {0} | extra
            row[p] = metrics.sample_score(p_clean, probability(model, [t for i, t in enumerate(r["ids"]) if i in keep],
                                                               r["target"]))
        per_sample.append(row)
    return metrics.auc(metrics.curve(per_sample))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--limit", type=int, default=100)
    ap.add_argument("--ratio", type=float, default=4.0)
    ap.add_argument("--depass", default=os.path.join(ROOT, "build", "bin", "depass"))
    ap.add_argument("--models", default=os.path.join(ROOT, "models"))
    a = ap.parse_args()
    torch.set_num_threads(1)
    path = os.path.join(a.models, "stories260K", "stories260K.bin")
    model = llama.to_dtype(llama.load_llama2c(path), torch.float64)
    records = [json.loads(l) for l in open(os.path.join(ROOT, "data", "faithfulness", "stories260K.jsonl"))][:a.limit]
    sinks = [sink_positions(model, r["ids"], a.ratio) - {0} for r in records]
    print("stories260K, %d records; sinks kept (R = %g): %.1f per prompt on average"
          % (len(records), a.ratio, sum(map(len, sinks)) / len(sinks)))
    print("| method | recover area, as specified | keeping the sinks too |")
    print("|---|---|---|")
    none = [set() for _ in records]
    for split in ("path", "softmax"):
        scores = scores_by_method(a.depass, path, records, split)
        methods = ["depass"] + (["grad-norm"] if split == "path" else [])
        for m in methods:
            s = [x[m] for x in scores]
            name = "depass (%s)" % split if m == "depass" else m
            print("| %s | %.1f | %.1f |" % (name, recover_area(model, records, s, none), recover_area(model, records, s, sinks)))


if __name__ == "__main__":
    main()
