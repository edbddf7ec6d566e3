#!/usr/bin/python3
"""Reference for the faithfulness metrics of issue #15 (token-level disrupt / recover
curves and top-1 evidence accuracy), and the writer of their golden cases.

    /usr/bin/python3 tools/faithfulness/metrics.py [--out tests/golden/faithfulness_metrics.json]

Rules (the C++ implementation must follow them exactly):
  candidates   every position of `ids` except position 0 (BOS): M = len(ids) - 1 positions.
  ranking      candidates by attribution score, highest first; equal scores: lower position
               first. NaN scores are an error (not ranked).
  k(p)         tokens selected at p percent (p integer in 1..100): k = ceil(p * M / 100),
               computed in integers as (p * M + 99) // 100; so k >= 1 for p >= 1, k(100) = M.
  disrupt-top  the ids with the top-k candidate positions DELETED (BOS and the order of the
               rest kept). recover-top: only BOS and the top-k candidates KEPT, in order.
               (Replacement variant: the selected / unselected ids are replaced by a chosen
               id instead of deleted, positions kept.)
  sample score s = min(100, |p_clean - p_new| / p_clean * 100), p_clean = the model's
               probability of the target on the full ids, p_new on the edited ids
               (p_clean must be > 0).
  curve        for p = 10, 20, ..., 100: the mean of s over samples.
  AUC          trapezoid rule over x = p / 100 in [0.1, 1.0], normalised by the width 0.9:
               AUC = (1 / 0.9) * sum_{i} 0.1 * (y_i + y_{i+1}) / 2 over the 10 points, so
               AUC is in [0, 100] and equals y when the curve is flat at y. Higher is better
               for disrupt, lower for recover.
  top-1 evidence accuracy  the fraction of samples whose first-ranked candidate (ranking
               above) is one of the sample's `evidence` positions; samples without evidence
               are not counted (an error if none has any).
"""
import argparse
import json
import math
import os

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
PERCENTS = list(range(10, 101, 10))


def sample_score(p_clean, p_new):
    if not p_clean > 0:
        raise ValueError("p_clean must be > 0, got %r" % p_clean)
    return min(100.0, abs(p_clean - p_new) / p_clean * 100.0)


def k_for(p, m):
    if not (isinstance(p, int) and 1 <= p <= 100):
        raise ValueError("p must be an integer percent in 1..100, got %r" % p)
    return (p * m + 99) // 100


def ranking(scores, keep_last=False):
    """Candidate positions 1..len(scores)-1 ranked by scores (index = position; the
    BOS score scores[0] is ignored), highest first, ties by lower position. keep_last (the
    paper's protocol): the last position is no candidate either."""
    cand = list(range(1, len(scores) - (1 if keep_last else 0)))
    if any(math.isnan(scores[i]) for i in cand):
        raise ValueError("NaN attribution score")
    return sorted(cand, key=lambda i: (-scores[i], i))


def selected(scores, p, keep_last=False):
    r = ranking(scores, keep_last)
    return sorted(r[:k_for(p, len(r))])


def disrupt_ids(ids, scores, p, replace_with=None, keep_last=False):
    sel = set(selected(scores, p, keep_last))
    if replace_with is None:
        return [t for i, t in enumerate(ids) if i not in sel]
    return [replace_with if i in sel else t for i, t in enumerate(ids)]


def recover_ids(ids, scores, p, replace_with=None, keep_last=False):
    sel = set(selected(scores, p, keep_last)) | {0} | ({len(ids) - 1} if keep_last else set())
    if replace_with is None:
        return [t for i, t in enumerate(ids) if i in sel]
    return [t if i in sel else replace_with for i, t in enumerate(ids)]


def curve(per_sample):
    """per_sample: list of dicts {p: sample score} -> [mean score at p for p in PERCENTS]."""
    return [sum(s[p] for s in per_sample) / len(per_sample) for p in PERCENTS]


def auc(ys):
    assert len(ys) == len(PERCENTS)
    area = sum(0.1 * (ys[i] + ys[i + 1]) / 2 for i in range(len(ys) - 1))
    return area / 0.9


def top1_evidence_accuracy(samples, keep_last=False):
    """samples: list of (scores, evidence positions)."""
    counted = [(s, ev) for s, ev in samples if ev]
    if not counted:
        raise ValueError("no sample has evidence")
    return sum(ranking(s, keep_last)[0] in set(ev) for s, ev in counted) / len(counted)


# ----------------------------------------------------------------------------
# golden cases: the expected values below were worked out by hand (comments) and are
# asserted against the functions above before the file is written.
# ----------------------------------------------------------------------------
def golden():
    score_cases = [  # (p_clean, p_new, expected)
        (0.5, 0.25, 50.0),    # |0.5-0.25|/0.5 = 0.5
        (0.2, 0.5, 100.0),    # 150 capped at 100
        (0.4, 0.4, 0.0),
        (0.8, 0.0, 100.0),
        (0.25, 0.275, 10.0),  # 0.025/0.25
        (0.5, 0.75, 50.0),    # increases count as change too
    ]
    k_cases = [  # (p, M, k)
        (10, 7, 1), (50, 7, 4), (100, 7, 7), (30, 3, 1), (40, 3, 2), (10, 20, 2),
        (10, 21, 3), (100, 1, 1), (10, 1, 1), (70, 10, 7),
    ]
    # one prompt: ids with BOS, attribution scores per position (BOS score ignored), ties
    # at positions 2 and 4 (2 wins), M = 5.
    ids = [1, 50, 51, 52, 53, 54]
    scores = [9.0, 0.1, 0.7, -0.3, 0.7, 0.2]
    # ranking: 2 (0.7), 4 (0.7, tie -> later), 5 (0.2), 1 (0.1), 3 (-0.3)
    selection_cases = [  # (p, k, selected, disrupt ids, recover ids)
        (10, 1, [2], [1, 50, 52, 53, 54], [1, 51]),
        (20, 1, [2], [1, 50, 52, 53, 54], [1, 51]),
        (30, 2, [2, 4], [1, 50, 52, 54], [1, 51, 53]),
        (50, 3, [2, 4, 5], [1, 50, 52], [1, 51, 53, 54]),
        (70, 4, [1, 2, 4, 5], [1, 52], [1, 50, 51, 53, 54]),
        (100, 5, [1, 2, 3, 4, 5], [1], [1, 50, 51, 52, 53, 54]),
    ]
    replace_cases = [  # (p, replace id, disrupt ids, recover ids)
        (30, 0, [1, 50, 0, 52, 0, 54], [1, 0, 51, 0, 53, 0]),
    ]
    # curve + AUC: two samples' scores at p = 10..100
    s1 = [10, 20, 30, 40, 50, 60, 70, 80, 90, 100]
    s2 = [30, 40, 50, 60, 70, 80, 90, 100, 100, 100]
    mean = [20, 30, 40, 50, 60, 70, 80, 90, 95, 100]
    # trapezoids of width 0.1: 0.1 * (25+35+45+55+65+75+85+92.5+97.5) = 57.5; / 0.9
    auc_mean = 57.5 / 0.9
    flat = [42.0] * 10
    evidence_samples = [  # (scores, evidence)
        ([0.0, 0.1, 0.9, 0.2], [2]),        # top 2 -> hit
        ([5.0, 0.3, 0.3, 0.1], [2]),        # tie 1/2 -> 1 -> miss (BOS score ignored)
        ([0.0, -1.0, -2.0, -0.5], [1, 3]),  # top 3 (-0.5) -> hit
        ([0.0, 0.4, 0.2], []),              # no evidence: not counted
    ]
    # keep_last (the paper's protocol): position 5 is no candidate; ranking 2, 4, 1, 3 (M = 4),
    # and recover keeps position 5 as well as BOS.
    keep_last_cases = [  # (p, k, selected, disrupt ids, recover ids)
        (10, 1, [2], [1, 50, 52, 53, 54], [1, 51, 54]),
        (50, 2, [2, 4], [1, 50, 52, 54], [1, 51, 53, 54]),
        (100, 4, [1, 2, 3, 4], [1, 54], [1, 50, 51, 52, 53, 54]),
    ]
    keep_last_replace_cases = [(50, 0, [1, 50, 0, 52, 0, 54], [1, 0, 51, 0, 53, 54])]
    keep_last_evidence = [([0.0, 0.1, 0.2, 0.9], [2])]  # the last (0.9) is no candidate: top 2 -> hit
    return dict(score_cases=score_cases, k_cases=k_cases, ids=ids, scores=scores,
                keep_last_cases=keep_last_cases, keep_last_replace_cases=keep_last_replace_cases,
                keep_last_evidence=keep_last_evidence, keep_last_evidence_accuracy=1.0,
                selection_cases=selection_cases, replace_cases=replace_cases,
                curve_samples=[s1, s2], curve_mean=mean, auc_mean=auc_mean, flat=flat,
                auc_flat=42.0, evidence_samples=evidence_samples, evidence_accuracy=2 / 3)


def check(g):
    close = lambda a, b: abs(a - b) <= 1e-9 * max(1.0, abs(b))  # noqa: E731
    for pc, pn, want in g["score_cases"]:
        assert close(sample_score(pc, pn), want), (pc, pn, want)
    for p, m, k in g["k_cases"]:
        assert k_for(p, m) == k, (p, m, k)
    for p, k, sel, dis, rec in g["selection_cases"]:
        assert k_for(p, len(g["ids"]) - 1) == k
        assert selected(g["scores"], p) == sel, (p, sel)
        assert disrupt_ids(g["ids"], g["scores"], p) == dis
        assert recover_ids(g["ids"], g["scores"], p) == rec
    for p, rid, dis, rec in g["replace_cases"]:
        assert disrupt_ids(g["ids"], g["scores"], p, rid) == dis
        assert recover_ids(g["ids"], g["scores"], p, rid) == rec
    per = [dict(zip(PERCENTS, s)) for s in g["curve_samples"]]
    assert all(close(a, b) for a, b in zip(curve(per), g["curve_mean"]))
    assert close(auc(g["curve_mean"]), g["auc_mean"])
    assert close(auc(g["flat"]), g["auc_flat"])
    assert close(top1_evidence_accuracy(g["evidence_samples"]), g["evidence_accuracy"])
    for p, k, sel, dis, rec in g["keep_last_cases"]:
        assert k_for(p, len(g["ids"]) - 2) == k
        assert selected(g["scores"], p, keep_last=True) == sel, (p, sel)
        assert disrupt_ids(g["ids"], g["scores"], p, keep_last=True) == dis
        assert recover_ids(g["ids"], g["scores"], p, keep_last=True) == rec
    for p, rid, dis, rec in g["keep_last_replace_cases"]:
        assert disrupt_ids(g["ids"], g["scores"], p, rid, keep_last=True) == dis
        assert recover_ids(g["ids"], g["scores"], p, rid, keep_last=True) == rec
    assert top1_evidence_accuracy(g["keep_last_evidence"]) == 0.0
    assert close(top1_evidence_accuracy(g["keep_last_evidence"], keep_last=True), g["keep_last_evidence_accuracy"])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.path.join(ROOT, "tests", "golden", "faithfulness_metrics.json"))
    args = ap.parse_args()
    g = golden()
    check(g)
    doc = dict(
        about="Hand-made cases for the issue #15 faithfulness metrics; rules in "
              "tools/faithfulness/metrics.py (values worked out by hand there, asserted "
              "against that reference before writing).",
        percents=PERCENTS,
        rules=dict(
            candidates="positions 1..len(ids)-1 (BOS excluded)",
            ranking="score descending, ties by lower position",
            k="ceil(p*M/100) = (p*M+99)//100",
            disrupt="delete the top-k candidates", recover="keep BOS + the top-k candidates",
            sample_score="min(100, |p_clean-p_new|/p_clean*100)",
            auc="trapezoid over p/100 in [0.1,1], divided by 0.9",
            top1_evidence_accuracy="first-ranked candidate in evidence; samples without evidence skipped",
            keep_last="the paper's protocol: the last position is no candidate either, and recover keeps it"),
        **g)
    with open(args.out, "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
    print("checked and wrote", args.out)


if __name__ == "__main__":
    main()
