#!/usr/bin/python3
"""Next-token prompts whose target is recoverable from the context, for the disrupt /
recover experiments (issue #15), made from the models' own stories.

    nice -n 15 /usr/bin/python3 tools/faithfulness/make_prompts.py \
        [--models ../shared/models] [--model stories260K|tinystories656k|all] [--n 240]

Writes data/faithfulness/<model>.jsonl, one record per line:
  {"prompt": text, "ids": [BOS, ...], "target": id, "target_text": piece,
   "evidence": [positions in ids of the earlier mention(s)], "top1_prob": p,
   "kind": "name"|"object", "word": the repeated word}

How (deterministic: numpy RandomState seeds, torch single-threaded):
 1. sample stories (batched KV-cache sampler in common.py) from BOS at temperature 0.8 and
    1.0, and at 0.8 from openings "Once upon a time, there was a <girl|dog|..> named <Name>.
    <Name> had a <object>." (random name/creature/object from fixed lists, for diversity:
    from BOS alone stories260K names almost only Lily, Tim and Timmy);
 2. re-encode every story's text with the reference tokenizer (canonical ids: what a user
    who types the text gets) and run the reference forward once (float32);
 3. candidates: a token k that starts an occurrence of a word w already in the story before
    it, where w is a character's name (capitalised, not a common capitalised word, never
    lower-case in the story) or an object (lower-case noun-like word after a determiner,
    not a stop word); token k must carry >= 2 letters of w (stories260K: >= 1); no mention of w may end at
    k-1; the model's top-1 after ids[:k] must be ids[k];
 4. the prompt is ids[:k]; its text must re-encode to exactly ids[:k]; top-1 is checked
    again with the float32 AND float64 reference forward on exactly these ids (top-1
    margin > 1e-4 in probability so float rounding cannot flip it); evidence = every
    position whose characters overlap an earlier mention of w;
 5. selection with caps for diversity (<= 3 prompts per story, <= n/12 per target token,
    names and objects alternating while both remain).
"""
import argparse
import collections
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
from common import Lm, positions_overlapping, rounded, sample_batch, words_with_spans, write_jsonl  # noqa: E402

CAP_STOP = set("""A An And As At But By Did Do Does Every For From He Her His How I If In It Its
Let Me Mom Mommy Dad Daddy Mum Mr Mrs My No Not Now Of Oh On Once One Or Our Please She So Some Soon
That The Their Then There These They This Those To Too Up We Well What When Where Which While Who
Why With Yes You Your Wow Thank Thanks Hello Hi Bye Look Come Go Let Can Will Would Could Should
After Before Finally Suddenly Together Sometimes Everyone Everything Today Tomorrow Yesterday
Goodbye Sorry Okay OK Ouch Yay Hey Remember Maybe Sure All Also Just Still Here Very""".split())

STOP = set("""the a an and or but so if then than that this these those there their they them
he she it its his her him we you your our my me i to of in on at by for from with about into onto
over under up down out off again very too also just not no yes was were is are be been being am
had has have do did does done can could will would should may might must shall said says say
saw see seen look looked went go goes going come came get got make made take took give gave
one two three day time way thing things lot lots some any all every each other another same
next first last big little small good bad happy sad new old best more most much many very
what when where which who why how because while until after before around back away home
let like liked love loved want wanted play played toys something anything everything nothing
again always never sometimes together very really around right left long own sure ready
name named once upon felt feel fun""".split())

# letters of the repeated word the target token must carry: stories260K's 512-token
# vocabulary splits most names and nouns after one letter (" T|om", " b|all"), so there a
# single letter is allowed; TinyStories-656K's 2048 tokens usually hold the whole word.
MIN_LETTERS = {"stories260K": 1, "tinystories656k": 2}

DETERMINERS = {"the", "his", "her", "their", "my", "your", "its", "our", "this", "that"}


def word_kind(w, prev_word, story_words_lower):
    """'name', 'object' or None for an occurrence of w preceded by prev_word."""
    if len(w) < 2 or not w.isalpha():
        return None
    if w[0].isupper() and w[1:].islower():
        if w in CAP_STOP or w.lower() in STOP or w.lower() in story_words_lower:
            return None
        return "name"
    if w.islower() and len(w) >= 3 and w not in STOP and prev_word in DETERMINERS:
        return "object"
    return None


def candidates(lm, full, story_index, min_pos, max_pos, min_letters):
    """All (k, word, kind, evidence) candidates of one canonical id sequence (no model check)."""
    raw, spans = lm.spans(full)
    words = words_with_spans(raw)
    lower_words = {w for (w, _, _) in words if w.islower()}
    start_of = {s: (j, w, e) for j, (w, s, e) in enumerate(words)}
    out = []
    for k in range(max(min_pos, 2), min(len(full), max_pos + 1)):
        a, b = spans[k]
        # the first letter of token k must be the start of a word
        letters = [c for c in range(a, b) if raw[c].isalpha()]
        if not letters or letters[0] not in start_of or raw[a:letters[0]].strip(" "):
            continue
        j, w, _ = start_of[letters[0]]
        # the target token must carry >= min_letters letters of w
        if len([c for c in letters if c < start_of[letters[0]][2]]) < min(min_letters, len(w)):
            continue
        prev_word = words[j - 1][0].lower() if j > 0 else ""
        kind = word_kind(w, prev_word, lower_words)
        if kind is None:
            continue
        same = (lambda x: x == w) if kind == "name" else (lambda x: x.lower() == w)
        earlier = [(s, e) for (x, s, e) in words[:j] if same(x)]
        if not earlier:
            continue
        evidence = sorted({p for (s, e) in earlier for p in positions_overlapping(spans, s, e)})
        if not evidence or evidence[-1] >= k - 1:  # a mention right before the target: too easy / fused
            continue
        out.append(dict(k=k, word=w, kind=kind, evidence=evidence, story=story_index))
    return out


def top1_check(lm, ids, target):
    """(ok, p64) for float64 and float32 reference forwards on exactly `ids`."""
    out = []
    for dtype in (torch.float64, torch.float32):
        p, _ = lm.probs(ids, dtype=dtype)
        last = p[-1]
        top2 = torch.topk(last, 2)
        ok = int(top2.indices[0]) == target and float(top2.values[0] - top2.values[1]) > 1e-4
        out.append((ok, float(last[target])))
    return out[0][0] and out[1][0], out[0][1]


NAMES = """Lily Sue Mia Anna Sara Lucy Amy Emma Kate Jane Molly Daisy Rose Zoe Ella
Tom Tim Ben Max Jack Sam Bob Joe Leo Jake Finn Mark Billy Spot Buddy Kitty""".split()
CREATURES = "girl boy dog cat bird bunny frog bear".split()
OBJECTS = """ball kite doll box boat hat cake book car apple flower drum key ring shell
train balloon cup blanket rock""".split()


def openings(n, seed):
    """n story openings that introduce a named character and an object (the model writes
    the rest); deterministic."""
    rng = np.random.RandomState(seed)
    out = []
    for _ in range(n):
        name, who, obj = NAMES[rng.randint(len(NAMES))], CREATURES[rng.randint(len(CREATURES))], \
            OBJECTS[rng.randint(len(OBJECTS))]
        out.append("Once upon a time, there was a %s named %s. %s had a %s." % (who, name, name, obj))
    return out


def collect(lm, args):
    rng_seeds = [(args.seed + 1000 * r, t, None) for r in range(args.rounds) for t in (0.8, 1.0)]
    rng_seeds += [(args.seed + 7 + 1000 * i, 0.8, o)
                  for i, o in enumerate(openings(args.openings, args.seed))]
    cands, stories = [], []
    for seed, temp, opening in rng_seeds:
        prefix = [lm.bos] if opening is None else lm.encode(opening)
        n = args.batch if opening is None else args.batch // 2
        for seq in sample_batch(lm, prefix, n, args.story_len, temp, seed):
            text = lm.decode(seq).split("<|")[0]  # a sampled special-token piece ends the story
            full = lm.encode(text)  # canonical ids of the story's text
            if len(full) < 16:
                continue
            with torch.no_grad():
                _, logits = lm.probs(full, dtype=torch.float32)
            top = torch.argmax(logits, dim=-1).tolist()
            si = len(stories)
            stories.append(full)
            for c in candidates(lm, full, si, args.min_pos, args.max_pos, MIN_LETTERS[lm.name]):
                if top[c["k"] - 1] == full[c["k"]]:
                    cands.append(c)
        print("%s: seed %d T %.1f %r -> %d stories, %d top-1 candidates"
              % (lm.name, seed, temp, opening, len(stories), len(cands)), flush=True)
    return stories, cands


def select(lm, stories, cands, n, seed):
    rng = np.random.RandomState(seed)
    order = rng.permutation(len(cands))
    by_kind = {"name": [cands[i] for i in order if cands[i]["kind"] == "name"],
               "object": [cands[i] for i in order if cands[i]["kind"] == "object"]}
    per_story, per_target = collections.Counter(), collections.Counter()
    cap_target = max(3, n // 12)
    records, turn = [], 0
    while len(records) < n and (by_kind["name"] or by_kind["object"]):
        kind = ("name", "object")[turn % 2] if by_kind["name"] and by_kind["object"] else \
            ("name" if by_kind["name"] else "object")
        turn += 1
        c = by_kind[kind].pop(0)
        full, k = stories[c["story"]], c["k"]
        target = full[k]
        if per_story[c["story"]] >= 3 or per_target[target] >= cap_target:
            continue
        ids = full[:k]
        prompt = lm.decode(ids)
        if lm.encode(prompt) != ids:
            continue  # the prompt text must give back exactly these ids
        ok, p = top1_check(lm, ids, target)
        if not ok:
            continue
        per_story[c["story"]] += 1
        per_target[target] += 1
        records.append(dict(prompt=prompt, ids=ids, target=target, target_text=lm.pieces[target],
                            evidence=c["evidence"], top1_prob=rounded(p), kind=c["kind"],
                            word=c["word"]))
    return records


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", default=os.path.join(common.ROOT, "..", "shared", "models"))
    ap.add_argument("--model", default="all", choices=common.MODEL_NAMES + ("all",))
    ap.add_argument("--n", type=int, default=240, help="prompts per model")
    ap.add_argument("--seed", type=int, default=15)
    ap.add_argument("--rounds", type=int, default=4, help="sampling rounds from BOS (x2 temperatures)")
    ap.add_argument("--openings", type=int, default=32,
                    help="sampling calls (batch/2 stories) from a fixed opening naming a character and an object")
    ap.add_argument("--batch", type=int, default=16, help="stories per sampling call")
    ap.add_argument("--story-len", type=int, default=200)
    ap.add_argument("--min-pos", type=int, default=12, help="shortest prompt (ids)")
    ap.add_argument("--max-pos", type=int, default=160, help="longest prompt (ids)")
    args = ap.parse_args()
    names = common.MODEL_NAMES if args.model == "all" else (args.model,)
    for name in names:
        lm = Lm(name, args.models)
        stories, cands = collect(lm, args)
        records = select(lm, stories, cands, args.n, args.seed)
        path = os.path.join(common.DATA, "%s.jsonl" % name)
        write_jsonl(path, records)
        kinds = collections.Counter(r["kind"] for r in records)
        print("%s: wrote %d records to %s (%s; %d distinct targets; mean top-1 p %.3f)"
              % (name, len(records), path, dict(kinds), len({r["target"] for r in records}),
                 np.mean([r["top1_prob"] for r in records]) if records else 0.0))
        if len(records) < args.n:
            print("WARNING: only %d of %d prompts (raise --rounds)" % (len(records), args.n))


if __name__ == "__main__":
    main()
