#!/usr/bin/python3
"""Labelled prompts for the he/she probe (issue #15 subspace protocol): the model's next
token is a pronoun, and the one character name in the prompt decides which one.

    nice -n 15 /usr/bin/python3 tools/faithfulness/make_probe_data.py \
        [--models ../shared/models] [--model stories260K|tinystories656k|all] [--pairs 120]

Writes data/faithfulness/<model>_pronoun.jsonl, one record per line:
  {"prompt": text, "ids": [BOS, ...], "label": 1 (she) | 0 (he),
   "evidence": [positions of the name's tokens], "name": the name, "pair": n,
   "p_she": P(she tokens), "p_he": P(he tokens)}
Records come in counterfactual pairs (same "pair" number, consecutive lines): the same text
with the name swapped for one of the other gender, so the set is exactly balanced and the
name is what flips the prediction.

How (deterministic: fixed seeds, torch single-threaded):
 1. openings without any gender cue, e.g. "<Name> went to the park." (fixed templates x
    fixed name lists; TinyStories-656K: also mid-sentence ones like "<Name> was sad because ",
    with a trailing space, see MID_TEMPLATES); the model continues each (sampled,
    temperature 0.8, KV-cache sampler);
 2. the story text is re-encoded (canonical ids) and run through the reference forward once;
    candidate cut: the first position whose float32 top-1 is a pronoun token (piece, without
    spaces, one of he/He/she/She) and whose prefix mentions exactly one character (the
    opening's name; no other capitalised non-function word) and no gender cue (he she him his
    her hers himself herself boy girl man woman lady king queen prince princess son daughter
    brother sister mom mommy mum dad daddy grandma grandpa aunt uncle mr mrs);
 3. label = the name's gender (from the fixed lists, not from the model); kept only if,
    with the float32 AND float64 reference forward on exactly the prompt ids, the top-1 is a
    pronoun of that gender and P(she tokens) vs P(he tokens) agrees; the text re-encodes to
    exactly the ids;
 4. the twin: every occurrence of the name replaced by a name of the other gender (fixed
    pairing), checked the same way with the other label; a pair is written only if both pass
    and neither prompt is already in the file.
"""
import argparse
import os
import re
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
from common import Lm, positions_overlapping, rounded, sample_batch, words_with_spans, write_jsonl  # noqa: E402
from make_prompts import CAP_STOP  # noqa: E402

FEMALE = "Lily Sue Mia Anna Sara Lucy Amy Emma Kate Jane Molly Daisy".split()
MALE = "Tom Tim Ben Max Jack Bob Joe Leo Jake Finn Mark Billy".split()
TEMPLATES = [
    "{N} went to the park.",
    "One day, {N} found a shiny rock.",
    "{N} wanted to play with the ball.",
    "Once upon a time, {N} lived in a small house.",
    "{N} saw a big tree in the garden.",
    "It was a sunny day. {N} was very happy.",
    "{N} liked to draw pictures.",
    "{N} ran to the tree and looked up.",
    "The sun was warm, so {N} went outside.",
    "{N} had a little red car.",
    "One morning, {N} woke up early.",
    "{N} looked at the sky and smiled.",
]
# TinyStories-656K's tokens end with the space ("Lily. She "): after text ending in "." it
# mostly predicts the end of the story or a new name, rarely a pronoun. Its openings get a
# trailing space and, first, mid-sentence templates where a pronoun is the natural next word.
MID_TEMPLATES = [
    "{N} was sad because",
    "{N} was happy because",
    "{N} wanted to play, so",
    "{N} went to the park. There,",
    "{N} ran home. At home,",
    "{N} found a box. Inside,",
    "{N} was tired, so",
    "{N} saw a bird. Then",
]
OPENING_TAIL = {"stories260K": "", "tinystories656k": " "}


def templates(model):
    return TEMPLATES if model == "stories260K" else MID_TEMPLATES + TEMPLATES


CUES = set("""he she him his her hers himself herself boy boys girl girls man woman lady king
queen prince princess son daughter brother sister mom mommy mum dad daddy grandma grandpa
granny aunt uncle mr mrs""".split())


class Pronouns:
    def __init__(self, lm):
        self.she = [i for i, p in enumerate(lm.pieces) if p.strip() in ("she", "She")]
        self.he = [i for i, p in enumerate(lm.pieces) if p.strip() in ("he", "He")]
        assert self.she and self.he, "no he/she tokens"

    def gender_of(self, tok):
        return 1 if tok in self.she else 0 if tok in self.he else None


def clean_prefix(lm, ids, name):
    """True if the text of ids names exactly one character (name) and has no gender cue."""
    raw, _ = lm.spans(ids)
    for w, _, _ in words_with_spans(raw):
        if w.lower() in CUES:
            return False
        if w[0].isupper() and w != name and w not in CAP_STOP:
            return False
    return True


def verify(lm, pr, ids, label):
    """(ok, p_she, p_he) from the float64 and float32 forwards on exactly ids."""
    res = None
    for dtype in (torch.float64, torch.float32):
        p, _ = lm.probs(ids, dtype=dtype)
        last = p[-1]
        top = int(torch.argmax(last))
        p_she, p_he = float(last[pr.she].sum()), float(last[pr.he].sum())
        if pr.gender_of(top) != label or (p_she > p_he) != (label == 1):
            return False, p_she, p_he
        if res is None:
            res = (p_she, p_he)
    return True, res[0], res[1]


def record(lm, ids, label, name, pair, p_she, p_he):
    raw, spans = lm.spans(ids)
    ev = sorted({q for (w, s, e) in words_with_spans(raw) if w == name
                 for q in positions_overlapping(spans, s, e)})
    return dict(prompt=lm.decode(ids), ids=ids, label=label, evidence=ev, name=name, pair=pair,
                p_she=rounded(p_she), p_he=rounded(p_he))


def swap(lm, text, name, other):
    new = re.sub(r"\b%s\b" % re.escape(name), other, text)
    return lm.encode(new)


def first_cut(lm, pr, full, name, min_pos):
    """First k >= min_pos whose float32 top-1 after full[:k] is a pronoun and whose prefix is clean."""
    with torch.no_grad():
        _, logits = lm.probs(full, dtype=torch.float32)
    top = torch.argmax(logits, dim=-1).tolist()
    for k in range(min_pos, len(full)):
        if pr.gender_of(top[k - 1]) is not None:
            return k if clean_prefix(lm, full[:k], name) else None
    return None


def build(lm, args):
    pr = Pronouns(lm)
    partner = dict(zip(FEMALE, MALE))
    partner.update(dict(zip(MALE, FEMALE)))
    records, seen, pair = [], set(), 0
    jobs = [(t, n) for t in templates(lm.name) for n in FEMALE + MALE]
    order = np.random.RandomState(args.seed).permutation(len(jobs))
    for j, jo in enumerate(order):
        if pair >= args.pairs:
            break
        tmpl, name = jobs[jo]
        opening = tmpl.format(N=name) + OPENING_TAIL[lm.name]
        prefix = lm.encode(opening)
        for seq in sample_batch(lm, prefix, args.batch, args.new_tokens, 0.8, args.seed + j):
            if pair >= args.pairs:
                break
            full = lm.encode(lm.decode(seq).split("<|")[0])
            k = first_cut(lm, pr, full, name, len(prefix) - 1)
            if k is None:
                continue
            ids = full[:k]
            text = lm.decode(ids)
            if tuple(ids) in seen or lm.encode(text) != ids:
                continue
            label = 1 if name in FEMALE else 0
            ok, ps, ph = verify(lm, pr, ids, label)
            if not ok:
                continue
            other = partner[name]
            ids2 = swap(lm, text, name, other)
            if tuple(ids2) in seen or lm.encode(lm.decode(ids2)) != ids2 or \
                    not clean_prefix(lm, ids2, other):
                continue
            ok2, ps2, ph2 = verify(lm, pr, ids2, 1 - label)
            if not ok2:
                continue
            seen.update([tuple(ids), tuple(ids2)])  # no prompt twice, twins included
            records.append(record(lm, ids, label, name, pair, ps, ph))
            records.append(record(lm, ids2, 1 - label, other, pair, ps2, ph2))
            pair += 1
        print("%s: job %d/%d %r -> %d pairs" % (lm.name, j + 1, len(jobs), opening, pair), flush=True)
    return records


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", default=os.path.join(common.ROOT, "..", "shared", "models"))
    ap.add_argument("--model", default="all", choices=common.MODEL_NAMES + ("all",))
    ap.add_argument("--pairs", type=int, default=120, help="counterfactual pairs per model")
    ap.add_argument("--seed", type=int, default=15)
    ap.add_argument("--batch", type=int, default=4, help="continuations per opening")
    ap.add_argument("--new-tokens", type=int, default=40)
    args = ap.parse_args()
    for name in (common.MODEL_NAMES if args.model == "all" else (args.model,)):
        lm = Lm(name, args.models)
        records = build(lm, args)
        path = os.path.join(common.DATA, "%s_pronoun.jsonl" % name)
        write_jsonl(path, records)
        n1 = sum(r["label"] for r in records)
        print("%s: wrote %d records (%d she, %d he) to %s" % (name, len(records), n1,
                                                              len(records) - n1, path))
        if len(records) < 2 * args.pairs:
            print("WARNING: only %d of %d pairs" % (len(records) // 2, args.pairs))


if __name__ == "__main__":
    main()
