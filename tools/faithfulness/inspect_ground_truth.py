#!/usr/bin/python3
"""Checks a ground-truth model with the independent reference only (no training code):
loads data/ground_truth/<task>/model.bin + tokenizer.bin with tools/reference/, and reports
on its test.jsonl
  * accuracy: the reference forward's top-1 equals "target";
  * that every prompt's text re-encodes to its ids;
  * how misleading raw attention is: top-1 evidence accuracy (metrics.py rule) when a
    position's score is the attention the last position pays it, averaged over the heads
    of one layer, for each layer, and for the mean over all layers; for twohop also with
    evidence = hop 2 only (the key statement holding the value: the two smallest positions).

    /usr/bin/python3 tools/faithfulness/inspect_ground_truth.py [--task kv|twohop|all] [--json]
"""
import argparse
import json
import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tools", "reference"))
sys.path.insert(0, HERE)
import llama as L  # noqa: E402
from tokenizers import Llama2cTokenizer  # noqa: E402
from metrics import top1_evidence_accuracy  # noqa: E402

torch.set_num_threads(1)


def last_row_attention(model, ids):
    """[n_layers, N]: the last position's attention, mean over heads, per layer."""
    cfg = model["cfg"]
    x = model["embed"][torch.tensor(ids)].clone()
    cos, sin = L.rope_cos_sin(len(ids), cfg["head_dim"], cfg["rope_theta"], x.dtype)
    rows = []
    for layer in model["layers"]:
        h = L.rmsnorm(x, layer["att_norm"], cfg["eps"])
        A, v = L.attention_probs(h, layer, cfg, cos, sin)
        rows.append(A[:, -1, :].mean(0))
        x = x + L.attention_mix(A, v, cfg) @ layer["wo"].T
        h = L.rmsnorm(x, layer["ffn_norm"], cfg["eps"])
        x = x + (L.silu(h @ layer["w1"].T) * (h @ layer["w3"].T)) @ layer["w2"].T
    return torch.stack(rows)


def inspect(task):
    d = os.path.join(ROOT, "data", "ground_truth", task)
    model = L.load_llama2c(os.path.join(d, "model.bin"))
    tok = Llama2cTokenizer(os.path.join(d, "tokenizer.bin"))
    recs = [json.loads(line) for line in open(os.path.join(d, "test.jsonl"))]
    hits, att = 0, []
    with torch.no_grad():
        for r in recs:
            assert tok.encode(r["prompt"], bos=True) == r["ids"], r["prompt"]
            hits += int(torch.argmax(L.forward(model, r["ids"])[-1])) == r["target"]
            att.append(last_row_attention(model, r["ids"]))
    n_layers = model["cfg"]["n_layers"]
    out = dict(task=task, n=len(recs), accuracy=hits / len(recs))
    for li in range(n_layers):
        out["attention_layer%d_top1_evidence" % li] = top1_evidence_accuracy(
            [(a[li].tolist(), r["evidence"]) for a, r in zip(att, recs)])
    out["attention_mean_top1_evidence"] = top1_evidence_accuracy(
        [(a.mean(0).tolist(), r["evidence"]) for a, r in zip(att, recs)])
    if task == "twohop":  # hop 2 alone: the key statement holding the value (two smallest)
        for li in range(n_layers):
            out["attention_layer%d_top1_hop2" % li] = top1_evidence_accuracy(
                [(a[li].tolist(), sorted(r["evidence"])[:2]) for a, r in zip(att, recs)])
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--task", default="all", choices=["kv", "twohop", "all"])
    args = ap.parse_args()
    for task in (["kv", "twohop"] if args.task == "all" else [args.task]):
        print(json.dumps(inspect(task)))


if __name__ == "__main__":
    main()
