#!/usr/bin/python3
"""Diagnostic for the recover curve (docs/faithfulness.md, "Split rules"): per method, the
share of samples where recover at 90% -- every token kept but the method's bottom-ranked
10% -- leaves the target MORE probable than the full prompt, and the mean score there.
A signed method ranks last the tokens it says lower the target; deleting them should raise
the target's probability, which the recover score (|p_clean - p_new| / p_clean) counts
as a loss like any other change.

    /usr/bin/python3 tools/faithfulness/recover_direction.py RUN_DIR [RUN_DIR ...]
"""
import collections
import json
import os
import sys


def main():
    for run in sys.argv[1:]:
        doc = json.load(open(os.path.join(run, "results.json")))
        at = doc["xs"].index(90) if 90 in doc["xs"] else len(doc["xs"]) - 2
        up, n, score = collections.Counter(), collections.Counter(), collections.Counter()
        for line in open(os.path.join(run, "samples.jsonl")):
            s = json.loads(line)
            if "error" in s:
                continue
            m = s["method"]
            n[m] += 1
            up[m] += s["recover_probability"][at] > s["p_clean"]
            score[m] += s["recover"][at]
        print("%s (recover at %d%%):\n" % (os.path.basename(run.rstrip("/")), doc["xs"][at]))
        print("| method | samples | target more probable | mean recover score |\n|---|---|---|---|")
        for m in n:
            print("| %s | %d | %.0f%% | %.1f |" % (m, n[m], 100.0 * up[m] / n[m], score[m] / n[m]))
        print()


if __name__ == "__main__":
    main()
