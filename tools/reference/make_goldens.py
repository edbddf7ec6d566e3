#!/usr/bin/python3
"""Regenerate every golden file under tests/golden/ from the Python references.

    /usr/bin/python3 tools/reference/make_goldens.py --models /work/shared/models [--only NAME ...]

NAME in: tokenizers, generate, logits, depass.  Output dir: --out (default tests/golden
next to this repo's tools/).  Requires /usr/bin/python3 with torch and numpy.
"""
import argparse
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import torch  # noqa: E402

from tokenizers import Llama2cTokenizer, HFBpeTokenizer  # noqa: E402
import llama  # noqa: E402
import depass_ref  # noqa: E402

torch.set_num_threads(1)

TOK512 = "stories260K/tok512.bin"
STORIES = "stories260K/stories260K.bin"
HF656 = "tinystories-656k"

LONG_SENTENCE = ("Once upon a time, there was a little girl named Lily. She loved to play "
                 "outside in the park. One day, she saw a big, red ball. She wanted to play "
                 "with it, but it was too high.")

COMMON_TEXTS = [
    ("Once upon a time", True),
    ("Once upon a time", False),
    ("", True),
    ("", False),
    (" ", True),
    ("  leading and trailing  ", True),
    ("Hello, world!", True),
    ("digits 0123456789 and 3.14159", True),
    ("tabs\tand\nnewlines\n\n", True),
    ("UTF-8: café naïve résumé", True),
    ("emoji 🙂👍", True),
    ("CJK 你好世界", True),
    ("punctuation !?.,;:'\"()[]{}<>", True),
    ("unknown bytes \u0001\u007f", True),
    ("Lily's mom said, \"Let's go to the park.\"", True),
    (LONG_SENTENCE, True),
    (LONG_SENTENCE, False),
    ("a\u00a0b\u200bc", True),          # no-break space, zero-width space
    ("<unk> <s> </s>", True),
]

HF_EXTRA_TEXTS = [
    ("<|start_story|>Once upon a time<|end_story|>", True),
    ("<|start_story|>Once upon a time<|end_story|>", False),
    ("The end. <|end_story|> <|start_story|>One day", True),
    ("a<unk>b <unk>", True),
    ("<|end_story|>", True),
]


def dump(obj, path):
    # json uses repr() for floats: shortest string that round-trips the float64 exactly
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, ensure_ascii=False, indent=None, separators=(",", ":"))
        f.write("\n")
    print("wrote %s (%d bytes)" % (path, os.path.getsize(path)))


# ----------------------------------------------------------------------------
def make_tokenizers(models, out):
    t = Llama2cTokenizer(os.path.join(models, TOK512))
    ids = t.encode("Once upon a time", bos=True)
    assert t.decode(ids) == "Once upon a time", (ids, t.decode(ids))
    cases = []
    for text, bos in COMMON_TEXTS:
        ids = t.encode(text, bos=bos)
        body = ids[1:] if bos else ids
        dec = t.decode_bytes(body, prev=t.BOS if bos else None).decode("utf-8")
        assert t.decode(ids) == dec
        if bos and text and "\u00a0" not in text:
            assert dec == text, (text, dec)
        cases.append(dict(text=text, add_bos=bos, ids=ids, decoded=dec))
    dump(dict(
        tokenizer=TOK512,
        notes=("llama2.c run.c encode(): optional BOS=1, dummy prefix token ' ' (id of piece ' ') "
               "if text non-empty, UTF-8 codepoints (<=4 bytes) looked up as pieces else byte "
               "fallback id=byte+3, then greedy merges of the adjacent pair with the highest "
               "piece score (leftmost on ties). 'decoded' = concatenation of llama2.c decode(prev, tok) "
               "over the ids after the BOS (prev = previous id, so the first token after a BOS "
               "loses one leading space; when add_bos is false nothing is stripped, so the "
               "dummy-prefix space stays). '<0xNN>' pieces decode to raw bytes."),
        cases=cases), os.path.join(out, "tokenizer_tok512.json"))

    h = HFBpeTokenizer(os.path.join(models, HF656, "tokenizer.json"))
    cases = []
    for text, bos in COMMON_TEXTS + HF_EXTRA_TEXTS:
        ids = h.encode(text, add_bos=bos)
        body = ids[1:] if bos else ids
        c = dict(text=text, add_bos=bos, ids=ids, decoded=h.decode(body))
        alt = h.encode(text, add_bos=bos, mode="raw_split")
        if alt != ids:
            c["ids_raw_split"] = alt
        cases.append(c)
    dump(dict(
        tokenizer=HF656 + "/tokenizer.json",
        notes=("HF tokenizers semantics. Normalizer Prepend('▁') (only on non-empty strings) then "
               "Replace(' ','▁'); no pre-tokenizer (whole normalised segment is one BPE word); BPE "
               "merges lowest rank first, leftmost on ties; chars missing from the vocab: byte "
               "fallback needs <0xNN> tokens, which this vocab lacks, so they become <unk> (id 0), "
               "consecutive ones fused into one <unk>. Added tokens are all normalized=true, so, as "
               "in tokenizers' AddedVocabulary, they are matched (leftmost-longest) in the NORMALISED "
               "text against their normalised content, i.e. '▁<|start_story|>': a special token is "
               "only recognised at the start of the text or after a space, and it absorbs that "
               "space. 'ids' follow this real-HF behaviour. 'ids_raw_split' (present only where it "
               "differs) is the simpler alternative: split the raw text on the literal special "
               "strings, then normalise + BPE each remaining segment separately. BOS <|start_story|> "
               "(1) prepended when add_bos. 'decoded' = decode(ids without the BOS, "
               "skip_special_tokens=False): Replace('▁',' '), ByteFallback, Fuse, Strip one leading "
               "space; special tokens decode to their content."),
        cases=cases), os.path.join(out, "tokenizer_tinystories656k.json"))


# ----------------------------------------------------------------------------
def load_model(models, which, dtype):
    if which == "stories260K":
        m = llama.load_llama2c(os.path.join(models, STORIES))
    else:
        m = llama.load_hf_safetensors(os.path.join(models, HF656))
    return llama.to_dtype(m, dtype)


def greedy_margin(model64, ids, gen):
    """Smallest top-1 minus top-2 logit gap (float64) over the greedy steps."""
    with torch.no_grad():
        lg = llama.forward(model64, list(ids) + list(gen))
    top2 = torch.topk(lg[len(ids) - 1:len(ids) - 1 + len(gen)], 2, dim=-1).values
    return float((top2[:, 0] - top2[:, 1]).min())


def make_generate(models, out):
    # stories260K + tok512
    tok = Llama2cTokenizer(os.path.join(models, TOK512))
    m32 = load_model(models, "stories260K", torch.float32)
    m64 = load_model(models, "stories260K", torch.float64)
    prompt = "Once upon a time"
    ids = tok.encode(prompt, bos=True)
    g32 = llama.greedy(m32, ids, 80)
    g64 = llama.greedy(m64, ids, 80)
    text = tok.decode(ids + g32)
    known = ("Once upon a time, there was a little girl named Lily. She loved to play outside in "
             "the park. One day, she saw a big, red ball. She wanted to play with it, but it was "
             "too high.\nLily's mom said,")
    assert text.startswith(known), text
    assert g32 == g64
    dump(dict(model=STORIES, tokenizer=TOK512, prompt=prompt, prompt_ids=ids, greedy_ids=g32,
              greedy_text=text,
              notes=("float32 greedy (argmax, no sampling), 80 new tokens, full recomputation. "
                     "float64 greedy gives the identical 80 ids; smallest float64 top1-top2 logit "
                     "gap over the steps: %.6g. greedy_text = llama2.c-style decode of prompt_ids + "
                     "greedy_ids (BOS not printed, its following token loses its leading space); it "
                     "reproduces the known story." % greedy_margin(m64, ids, g32))),
         os.path.join(out, "stories260K_generate.json"))

    hf = HFBpeTokenizer(os.path.join(models, HF656, "tokenizer.json"))
    m32 = load_model(models, "tinystories656k", torch.float32)
    m64 = load_model(models, "tinystories656k", torch.float64)
    prompt = "Once upon a time,"
    ids = hf.encode(prompt, add_bos=True)
    g32 = llama.greedy(m32, ids, 60)
    g64 = llama.greedy(m64, ids, 60)
    assert g32 == g64
    text = hf.decode(ids[1:] + g32)
    dump(dict(model=HF656 + "/model.safetensors", tokenizer=HF656 + "/tokenizer.json",
              prompt=prompt, prompt_ids=ids, greedy_ids=g32, greedy_text=text,
              notes=("float32 greedy, 60 new tokens, RoPE halves layout. float64 greedy gives the "
                     "identical 60 ids; smallest float64 top1-top2 logit gap: %.6g. greedy_text = HF "
                     "decode of prompt_ids[1:] + greedy_ids. (With the adjacent-pair RoPE layout "
                     "this model degenerates into 'an an an ...': layout matters.)"
                     % greedy_margin(m64, ids, g32))),
         os.path.join(out, "tinystories656k_generate.json"))


def logits_cases(m32, m64, prompts_ids, positions=None):
    cases = []
    for ids in prompts_ids:
        with torch.no_grad():
            l64 = llama.forward(m64, ids)
            l32 = llama.forward(m32, ids)
        pos = list(range(len(ids))) if positions is None else positions
        c = dict(ids=ids)
        if positions is not None:
            c["positions"] = pos
        c["logits_f64"] = [[float(v) for v in l64[p].tolist()] for p in pos]
        c["logits_f32"] = [[float(v) for v in l32[p].tolist()] for p in pos]
        c["max_abs_diff_f32_f64"] = float((l64 - l32.double()).abs().max())
        cases.append(c)
    return cases


def make_logits(models, out):
    tok = Llama2cTokenizer(os.path.join(models, TOK512))
    m32 = load_model(models, "stories260K", torch.float32)
    m64 = load_model(models, "stories260K", torch.float64)
    prompts = [tok.encode(s, bos=True)[:10] for s in
               ["Once upon a time, there was", "Lily and Ben went to the park",
                "The cat sat on the mat."]]
    dump(dict(model=STORIES, tokenizer=TOK512,
              notes=("logits for all positions of each case (ids include BOS). logits_f64: the "
                     "float64 reference; logits_f32: the same forward in float32 (torch CPU), "
                     "expect ~1e-5 agreement with a float32 C++ forward, not bit equality. "
                     "RoPE cos/sin computed in float64 then cast."),
              cases=logits_cases(m32, m64, prompts)),
         os.path.join(out, "stories260K_logits.json"))

    hf = HFBpeTokenizer(os.path.join(models, HF656, "tokenizer.json"))
    m32 = load_model(models, "tinystories656k", torch.float32)
    m64 = load_model(models, "tinystories656k", torch.float64)
    prompts = [hf.encode(s, add_bos=True)[:10] for s in
               ["Once upon a time, there was", "The cat sat on the mat."]]
    dump(dict(model=HF656 + "/model.safetensors", tokenizer=HF656 + "/tokenizer.json",
              notes=("logits for all positions of each case (ids include BOS); RoPE halves layout, "
                     "rms_norm_eps 1e-6, tied lm_head. logits_f64 reference, logits_f32 the same "
                     "forward in float32."),
              cases=logits_cases(m32, m64, prompts)),
         os.path.join(out, "tinystories656k_logits.json"))


# ----------------------------------------------------------------------------
DEPASS_STORIES = [
    "Once upon a time, there was a little",
    "Lily and Ben went to the park. They saw a big dog. Ben was scared, so Lily held his",
    "Tom had a red ball. He liked to throw it high in the sky. One day, the ball fell into the",
    "Sara wanted to bake a cake for her mom. She got flour, eggs and sugar. When her mom came "
    "home, she was very",
    "Once upon a time, there was a little boy named Tim. Tim loved to play with his toy car. "
    "Every day, he would race it around the house. His mom would smile and say, \"Be careful, "
    "Tim!\"\nOne day, Tim took his car outside to the big hill near his home. He put the car at "
    "the top of the hill and let it go. The car went fast. Tim ran after it, but the car hit a "
    "rock and flew into the tall grass. Tim looked and looked, but he could not find his",
]

DEPASS_TINY = DEPASS_STORIES[:4]


def depass_case(m64, ids, piece_of, extra=False, naive_check=False):
    res = depass_ref.attribute(m64, ids, temperature=0.1, bos_sink=True, split="softmax")
    p, t = res["position"], res["target"]
    total = sum(res["scores"]) + res["bias_score"]
    assert abs(total - res["target_logit"]) <= 1e-11 * max(1.0, abs(res["target_logit"]))
    assert res["info"]["max_rel_state_err"] < 1e-12 and res["info"]["max_rel_logit_err"] < 1e-12
    c = dict(ids=ids, position=p, target=t, target_piece=piece_of(t),
             target_logit=res["target_logit"], scores=res["scores"], bias_score=res["bias_score"],
             max_rel_invariant_error=res["info"]["max_rel_state_err"],
             max_rel_logit_sum_error=res["info"]["max_rel_logit_err"])
    with torch.no_grad():
        top2 = torch.topk(llama.forward(m64, ids)[p], 2).values
    c["target_top2_gap"] = float(top2[0] - top2[1])
    if naive_check:
        cl, _ = depass_ref.depass_naive(m64, ids, split="softmax", temperature=0.1, bos_sink=True)
        d = max(abs(float(cl[m, p, t]) - s) for m, s in enumerate(res["scores"]))
        assert d < 1e-11, d
        c["naive_reimplementation_max_abs_diff"] = d
    if extra:
        for key, kw in [("argmax", dict(split="argmax", bos_sink=True)),
                        ("proportional", dict(split="proportional", bos_sink=True)),
                        ("proportional_no_bos_sink", dict(split="proportional", bos_sink=False)),
                        ("no_bos_sink", dict(split="softmax", bos_sink=False))]:
            r = depass_ref.attribute(m64, ids, position=p, target=t, temperature=0.1, **kw)
            assert abs(sum(r["scores"]) + r["bias_score"] - r["target_logit"]) < 1e-9
            c["scores_" + key] = r["scores"]
            c["bias_score_" + key] = r["bias_score"]
            if naive_check:
                cl, _ = depass_ref.depass_naive(m64, ids, temperature=0.1, **kw)
                d = max(abs(float(cl[m, p, t]) - s) for m, s in enumerate(r["scores"]))
                c["naive_reimplementation_max_abs_diff_" + key] = d
    return c


DEPASS_NOTES = (
    "Token-level DePass, float64, dense components (M = N input tokens + 1 bias component). "
    "Attention: frozen RMSNorm scale and real attention probabilities, V_m = norm(C[m]) Wv^T, "
    "per-head A[h] V_m[kv(h)], then Wo. MLP: g_m = norm(C[m]) W1^T; split weights = softmax over "
    "eligible components of g_m/T (T = temperature), eligible = g_m != 0 exactly, and with "
    "bos_sink the component of position 0 is not eligible at positions > 0; neurons without an "
    "eligible component go to the bias component (never happens here: bias_score is 0); "
    "C[m] += (w_m * a) W2^T. Output: frozen final-norm scale, then Wcls. scores[m] = logit of "
    "`target` at `position` from component m; sum(scores) + bias_score = target_logit. target = "
    "float64 argmax at the last position. max_rel_invariant_error = max over all layer boundaries "
    "of max|sum_m C[m] - x| / max|x|; max_rel_logit_sum_error likewise for the logits. "
    "Variants (first case only): scores_argmax (whole neuron to the eligible component with the "
    "largest g_m, ties to the lowest index; bos_sink on), scores_proportional (w_m = g_m / sum of "
    "eligible g_m, softmax where |sum g_m| <= 1e-3 * sum |g_m| (the shares would be ill-conditioned); "
    "bos_sink on), scores_proportional_no_bos_sink, scores_no_bos_sink (softmax, bos_sink off). "
    "naive_reimplementation_max_abs_diff*: agreement with a second, loop-based implementation "
    "(per-head Wo before mixing, per-neuron split) in depass_ref.py.")


def make_depass(models, out):
    tok = Llama2cTokenizer(os.path.join(models, TOK512))
    m64 = load_model(models, "stories260K", torch.float64)
    piece = lambda t: tok.pieces[t].decode("utf-8", errors="replace")  # noqa: E731
    cases = []
    for k, text in enumerate(DEPASS_STORIES):
        ids = tok.encode(text, bos=True)
        c = depass_case(m64, ids, piece, extra=(k == 0), naive_check=(len(ids) <= 40))
        c["text"] = text
        cases.append(c)
    dump(dict(model=STORIES, tokenizer=TOK512, temperature=0.1, bos_sink=True, split="softmax",
              notes=DEPASS_NOTES, cases=cases), os.path.join(out, "depass_stories260K.json"))

    hf = HFBpeTokenizer(os.path.join(models, HF656, "tokenizer.json"))
    m64 = load_model(models, "tinystories656k", torch.float64)
    piece = lambda t: hf.id_to_tok[t]  # noqa: E731
    cases = []
    for k, text in enumerate(DEPASS_TINY):
        ids = hf.encode(text, add_bos=True)
        c = depass_case(m64, ids, piece, extra=(k == 0), naive_check=True)
        c["text"] = text
        cases.append(c)
    dump(dict(model=HF656 + "/model.safetensors", tokenizer=HF656 + "/tokenizer.json",
              temperature=0.1, bos_sink=True, split="softmax", notes=DEPASS_NOTES, cases=cases),
         os.path.join(out, "depass_tinystories656k.json"))


# ----------------------------------------------------------------------------
def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="/work/shared/models")
    ap.add_argument("--out", default=os.path.join(HERE, "..", "..", "tests", "golden"))
    ap.add_argument("--only", nargs="*", default=None)
    args = ap.parse_args()
    out = os.path.abspath(args.out)
    os.makedirs(out, exist_ok=True)
    steps = [("tokenizers", make_tokenizers), ("generate", make_generate), ("logits", make_logits), ("depass", make_depass)]
    for name, fn in steps:
        if args.only is None or name in args.only:
            fn(args.models, out)


if __name__ == "__main__":
    main()
