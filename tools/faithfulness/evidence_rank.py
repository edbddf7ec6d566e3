#!/usr/bin/python3
"""Where each method's ranking puts the evidence, from a `depass evaluate` run's samples
(disrupt / recover protocols): a diagnostic for docs/faithfulness.md, not a metric.

    /usr/bin/python3 tools/faithfulness/evidence_rank.py RUN_DIR DATA.jsonl

Per method: the share of samples whose first-ranked token is the last position (the token
whose prediction is explained), the top-1 evidence accuracy (as depass evaluate counts it),
the same with the last position left out of the ranking, and the mean rank of the best
evidence position within the saved top 10 (11 when none is there).
"""
import json
import sys
from collections import defaultdict


def main():
    run, data = sys.argv[1], sys.argv[2]
    records = {}
    with open(data) as f:
        for number, line in enumerate(f, 1):
            if line.strip():
                records[number] = json.loads(line)
    stats = defaultdict(lambda: {"n": 0, "last": 0, "hit": 0, "hit_without_last": 0, "rank": 0})
    order = []
    with open(run + "/samples.jsonl") as f:
        for line in f:
            s = json.loads(line)
            if "error" in s or "top_ranked" not in s:
                continue
            r = records[s["line"]]
            evidence = set(r.get("evidence", []))
            if not evidence:
                continue
            m = s["method"]
            if m not in order:
                order.append(m)
            st = stats[m]
            last = len(r["ids"]) - 1
            ranked = s["top_ranked"]
            without_last = [p for p in ranked if p != last]
            st["n"] += 1
            st["last"] += ranked[0] == last
            st["hit"] += ranked[0] in evidence
            st["hit_without_last"] += bool(without_last) and without_last[0] in evidence
            st["rank"] += min([ranked.index(p) + 1 for p in evidence if p in ranked] or [11])
    print("| method | samples | top-1 is the last position | top-1 evidence | top-1 evidence, last position left out | mean rank of the best evidence (top 10; 11 = not there) |")
    print("|---|---|---|---|---|---|")
    for m in order:
        st = stats[m]
        n = st["n"]
        print("| %s | %d | %.1f%% | %.1f%% | %.1f%% | %.2f |" % (
            m, n, 100.0 * st["last"] / n, 100.0 * st["hit"] / n, 100.0 * st["hit_without_last"] / n, st["rank"] / n))


if __name__ == "__main__":
    main()
