#!/usr/bin/python3
"""Does the evidence matter? For every record of data/faithfulness/<model>.jsonl: the
metrics.py sample score when the evidence tokens are deleted, against deleting as many
random non-evidence, non-BOS tokens (numpy seed 15), with the float64 reference forward.
A sanity check of the data (not a golden): evidence deletion should hurt far more.

    nice -n 15 /usr/bin/python3 tools/faithfulness/check_evidence.py [--model ...] [--limit N]
"""
import argparse
import json
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
from common import Lm  # noqa: E402
from metrics import sample_score  # noqa: E402


def p_target(lm, ids, target):
    p, _ = lm.probs(ids, dtype=torch.float64)
    return float(p[-1, target])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", default=os.path.join(common.ROOT, "..", "shared", "models"))
    ap.add_argument("--model", default="all", choices=common.MODEL_NAMES + ("all",))
    ap.add_argument("--limit", type=int, default=0)
    args = ap.parse_args()
    for name in (common.MODEL_NAMES if args.model == "all" else (args.model,)):
        lm = Lm(name, args.models)
        rng = np.random.RandomState(15)
        recs = [json.loads(line) for line in open(os.path.join(common.DATA, name + ".jsonl"))]
        if args.limit:
            recs = recs[:args.limit]
        ev_scores, rnd_scores, still_top1 = [], [], 0
        for r in recs:
            ids, ev = r["ids"], set(r["evidence"])
            p0 = p_target(lm, ids, r["target"])
            others = [i for i in range(1, len(ids)) if i not in ev]
            drop = set(rng.choice(others, min(len(ev), len(others)), replace=False).tolist())
            ids_ev = [t for i, t in enumerate(ids) if i not in ev]
            ids_rnd = [t for i, t in enumerate(ids) if i not in drop]
            pe, _ = lm.probs(ids_ev, dtype=torch.float64)
            still_top1 += int(torch.argmax(pe[-1])) == r["target"]
            ev_scores.append(sample_score(p0, float(pe[-1, r["target"]])))
            rnd_scores.append(sample_score(p0, p_target(lm, ids_rnd, r["target"])))
        print(json.dumps(dict(model=name, n=len(recs),
                              mean_score_delete_evidence=round(float(np.mean(ev_scores)), 2),
                              mean_score_delete_random_same_count=round(float(np.mean(rnd_scores)), 2),
                              target_still_top1_without_evidence=still_top1)))


if __name__ == "__main__":
    main()
