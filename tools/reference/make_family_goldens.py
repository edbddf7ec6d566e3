#!/usr/bin/python3
"""Regenerates the model-family test data and goldens, deterministically:

  tests/data/families/<name>/{config.json, model.safetensors, tokenizer.json,
                              tokenizer_config.json}
  tests/golden/tokenizer_bytelevel_{gpt2,llama3,qwen2}.json
  tests/golden/family_<name>.json             (float64 + float32 logits)
  tests/golden/family_depass_{gpt2,qwen2,gemma,gemma2,gpt_neox,gpt_neox_sequential}.json
                                              (token-level DePass, float64)

and asserts the validation checks (see tools/reference/README.md).

    /usr/bin/python3 tools/reference/make_family_goldens.py [--root REPO] [--check]

--check regenerates into a temporary directory and compares byte for byte with the
committed files instead of writing them.
"""
import argparse
import filecmp
import math
import os
import shutil
import sys
import tempfile
import unicodedata

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import bytelevel_bpe as bpe  # noqa: E402
import families as fam  # noqa: E402

torch.set_num_threads(1)

# family directory -> tokenizer style
FAMILIES = {
    "llama": "llama3", "llama3": "llama3", "llama_f16": "llama3", "mistral": "llama3",
    "qwen2": "qwen2", "qwen2_untied": "qwen2", "gpt2": "gpt2", "gpt2_noprefix": "gpt2",
    "qwen3": "qwen2", "phi3": "llama3", "gemma": "llama3", "gemma2": "llama3",
    "gpt_neox": "gpt2", "gpt_neox_sequential": "gpt2",
}
NEOX = ("gpt_neox", "gpt_neox_sequential")
# where each style's tokenizer golden points (relative to tests/data)
TOKENIZER_HOME = {"llama3": "families/llama3/tokenizer.json",
                  "qwen2": "families/qwen2/tokenizer.json",
                  "gpt2": "families/gpt2/tokenizer.json"}
SEEDS = {"llama": 1001, "llama3": 1002, "mistral": 1003, "qwen2": 1004,
         "qwen2_untied_lm_head": 1005, "gpt2": 1006, "qwen3": 1007, "phi3": 1008,
         "gemma": 1009, "gemma2": 1010, "gpt_neox": 1011, "gpt_neox_sequential": 1012}
LLAMA3_ROPE_SCALING = {"factor": 8.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                       "original_max_position_embeddings": 64, "rope_type": "llama3"}

# ----------------------------------------------------------------------------
# JSON output: floats with 17 significant digits ("%.17g"), UTF-8
# ----------------------------------------------------------------------------
import json  # noqa: E402


class Param(float):
    """A parameter value (not a computed one): written with Python's shortest repr."""


def _scalar(v):
    if isinstance(v, bool) or v is None or isinstance(v, (int, str)):
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, Param):
        return repr(float(v))
    if isinstance(v, float):
        assert math.isfinite(v)
        return "%.17g" % v
    raise TypeError(type(v))


def dumps(o, ind=0):
    pad = "  " * (ind + 1)
    if isinstance(o, dict):
        if not o:
            return "{}"
        items = ["%s%s: %s" % (pad, json.dumps(k, ensure_ascii=False), dumps(v, ind + 1))
                 for k, v in o.items()]
        return "{\n" + ",\n".join(items) + "\n" + "  " * ind + "}"
    if isinstance(o, list):
        if all(not isinstance(v, (list, dict)) for v in o):
            return "[" + ", ".join(_scalar(v) for v in o) + "]"
        return "[\n" + ",\n".join(pad + dumps(v, ind + 1) for v in o) + "\n" + "  " * ind + "]"
    return _scalar(o)


def write_golden(obj, path):
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        f.write(dumps(obj) + "\n")


def floats(t):
    return [float(v) for v in t.tolist()]


# ----------------------------------------------------------------------------
# tokenizer golden strings
# ----------------------------------------------------------------------------
NFC_TEXT = "café naïve résumé Ångström"
NFD_TEXT = unicodedata.normalize("NFD", NFC_TEXT)
COMMON_TEXTS = [
    "",
    "Hello world",
    " Hello",
    "Hello ",
    "Hello   world",
    "   ",
    " ",
    "line one\nline two\n\nend\n",
    "Windows\r\nline\r\n\r\nend",
    "tab\tseparated\t\tvalues\t",
    "  \t \n x  \n\n  y",
    "1234567 and 42, 3.14159 or 1000000000!",
    "don't I'M we'll they've she'd YOU'RE it's Lily's",
    "Wait... what?!? (yes) -- no; ok: [x] {y} <z> @#$%^&*",
    "emoji: 👩\u200d👩\u200d👧\u200d👦 family, 👍🏽 ok, ❤️ love, 🏳️\u200d🌈 flag",
    NFC_TEXT,
    NFD_TEXT,
    "中文字符测试 日本語のテキスト 한국어 텍스트",
    "x² + ½ = ٣ and Ⅻ",
    "Once upon a time, there was a little girl named Lily.",
    "The the THE tHe thE",
    "mixed123abc 4567890123 a1b22c333",
    "\n\n\n",
    "   leading and trailing spaces   ",
    "it\u2019s \u201cquoted\u201d \u2014 dash",
    "Supercalifragilisticexpialidocious antidisestablishmentarianism",
    "Lily said 'Max, come here!' and 'Mom, look!' 'Twas fun.",
    "'The end,' she read to SUE'S DOG.",
    "The end.\nNext line!\n\nDone?\r\nOk.\r\n\r\n",
    "\"I will,\" he said. \"I'M here.\" (Lily) [Max]",
    "At the café, Zoë ate crêpes.",
    "Tom counted 1234567 and 9876543210 stars, then 100000.",
]
SPECIAL_TEXTS = {
    "gpt2": [
        ("Hello<|endoftext|>world", False),
        (" <|endoftext|> spaced <|endoftext|>", False),
        ("<|endoftext|>Once upon a time", False),
        ("<|endoftext|><|endoftext|>", False),
        ("<|endoftext| almost <|endoftext|>>", False),
    ],
    "llama3": [
        ("<|begin_of_text|>Hi", True),
        ("a<|eot_id|>b", False),
        ("<|start_header_id|>user<|end_header_id|>\n\nHello there!<|eot_id|>", True),
        ("The end.<|end_of_text|>", True),
        ("<|begin_of_text| not special <|eot_id>", True),
    ],
    "qwen2": [
        ("<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n", False),
        ("text<|endoftext|>more text", False),
        (" <|im_end|> <|im_start|>", False),
        ("<|im_start|<|im_end|>>", False),
    ],
}


def tokenizer_cases(style, tok):
    if style == "llama3":
        texts = []
        for i, t in enumerate(COMMON_TEXTS):
            texts.append((t, i % 3 != 1))  # mostly with BOS, some without
        texts.append(("", False))
        texts.append(("Hello world", False))
    else:
        texts = [(t, False) for t in COMMON_TEXTS]
    texts += SPECIAL_TEXTS[style]
    if style == "llama3":
        w = ignore_merges_word(tok)
        if w is not None:
            texts.append((w, True))
            texts.append(("A" + w + " and" + w + "!", True))
    cases = []
    for text, add_bos in texts:
        ids = tok.encode(text, add_special_tokens=add_bos)
        c = {"text": text, "add_bos": add_bos, "ids": ids, "decoded": tok.decode(ids),
             "tokens": tok.tokens(ids)}
        if tok.ignore_merges:
            alt = tok.encode(text, add_special_tokens=add_bos, ignore_merges=False)
            if alt != ids:
                c["ids_without_ignore_merges"] = alt
        cases.append(c)
    return cases


def ignore_merges_word(tok):
    """A vocabulary word (leading space + letters) that plain merging does not reach as
    one token, so that ignore_merges: true changes the result."""
    for t, i in sorted(tok.vocab.items(), key=lambda kv: kv[1]):
        if not t.startswith("<|"):
            if bpe.bpe_merge(list(t), tok.ranks) != [t]:
                return bytes(bpe.CHAR_TO_BYTE[c] for c in t).decode("utf-8")
    return None


def _with_pattern(f):
    def mod(tj):
        if tj["pre_tokenizer"]["type"] == "Sequence":
            sp = tj["pre_tokenizer"]["pretokenizers"][0]
            sp["pattern"]["Regex"] = f(sp["pattern"]["Regex"])
        else:  # GPT-2 ByteLevel(use_regex) -> explicit Split with the mutated pattern
            tj["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": [
                {"type": "Split", "pattern": {"Regex": f(bpe.GPT2_PATTERN)},
                 "behavior": "Isolated", "invert": False},
                {"type": "ByteLevel", "add_prefix_space": False, "use_regex": False}]}
    return mod


def _replace(a, b):
    def f(p):
        assert a in p, (a, p)
        return p.replace(a, b)
    return f


def mutations(style):
    """Plausible implementation mistakes; the goldens should catch each of them."""
    def set_model(key, val):
        def mod(tj):
            tj["model"][key] = val
        return mod

    def no_added(tj):
        tj["added_tokens"] = []

    def no_norm(tj):
        tj["normalizer"] = None

    m = [("special tokens not split", no_added)]
    if style in ("llama3", "qwen2"):
        m += [
            ("GPT-2 pattern instead", _with_pattern(lambda p: bpe.GPT2_PATTERN)),
            ("case-sensitive contractions", _with_pattern(_replace("(?i:", "(?:"))),
            ("no \\s+(?!\\S) alternative", _with_pattern(_replace("|\\s+(?!\\S)", ""))),
            ("no [\\r\\n]* after punctuation", _with_pattern(_replace("]+[\\r\\n]*", "]+"))),
            ("no \\s*[\\r\\n]+ alternative", _with_pattern(_replace("|\\s*[\\r\\n]+", ""))),
            ("' ?' word prefix instead of [^\\r\\n\\p{L}\\p{N}]?",
             _with_pattern(_replace("[^\\r\\n\\p{L}\\p{N}]?\\p{L}+", " ?\\p{L}+"))),
            ("\\p{L} as ASCII letters", _with_pattern(
                lambda p: p.replace("\\p{L}+", "[a-zA-Z]+").replace("\\p{L}", "a-zA-Z"))),
        ]
    if style == "llama3":
        m += [("digits \\p{N}+ instead of \\p{N}{1,3}",
               _with_pattern(_replace("\\p{N}{1,3}", "\\p{N}+"))),
              ("single digits", _with_pattern(_replace("\\p{N}{1,3}", "\\p{N}"))),
              ("ignore_merges ignored", set_model("ignore_merges", False))]
    if style == "qwen2":
        m += [("digit groups \\p{N}{1,3}", _with_pattern(_replace("|\\p{N}|", "|\\p{N}{1,3}|"))),
              ("no NFC normaliser", no_norm)]
    if style == "gpt2":
        m += [("Llama 3 pattern instead", _with_pattern(lambda p: bpe.LLAMA3_PATTERN)),
              ("case-insensitive contractions",
               _with_pattern(lambda p: "(?i:'s|'t|'re|'ve|'m|'ll|'d)" + p[len("'s|'t|'re|'ve|'m|'ll|'d"):])),
              ("no \\s+(?!\\S) alternative", _with_pattern(_replace("|\\s+(?!\\S)", ""))),
              ("\\p{N}{1,3} digit groups", _with_pattern(_replace(" ?\\p{N}+", " ?\\p{N}{1,3}"))),
              ("no optional space before words", _with_pattern(_replace(" ?\\p{L}+", "\\p{L}+")))]
    return m


MISSED = []


def mutation_report(style, path, cases):
    import copy
    with open(path, encoding="utf-8") as f:
        tj0 = json.load(f)
    out = []
    for name, mod in mutations(style):
        tj = copy.deepcopy(tj0)
        mod(tj)
        t = bpe.ByteLevelBPE(tj)
        caught = sum(t.encode(c["text"], add_special_tokens=c["add_bos"]) != c["ids"]
                     for c in cases)
        out.append((name, caught))
    return out


def expected_decoding(style, text, add_bos):
    # the pipeline loses nothing except what the normaliser changes (NFC for qwen2)
    body = "".join(unicodedata.normalize("NFC", seg) if (style == "qwen2" and not sp) else seg
                   for seg, sp in split_specials(style, text))
    return ("<|begin_of_text|>" if (style == "llama3" and add_bos) else "") + body


def split_specials(style, text):
    out, i, buf = [], 0, ""
    sp = sorted(bpe.SPECIALS[style], key=len, reverse=True)
    while i < len(text):
        hit = next((s for s in sp if text.startswith(s, i)), None)
        if hit:
            if buf:
                out.append((buf, False))
                buf = ""
            out.append((hit, True))
            i += len(hit)
        else:
            buf += text[i]
            i += 1
    if buf:
        out.append((buf, False))
    return out


# ----------------------------------------------------------------------------
# model prompts
# ----------------------------------------------------------------------------
LOGIT_TEXTS = {
    "llama3": [("Once upon a time", True),
               ("Tom had 12 apples.", True)],
    "qwen2": [("Once upon a time", False),
              ("<|im_start|>user\nHi Lily!<|im_end|>", False)],
    "gpt2": [("<|endoftext|>Once upon a time", False),
             ("Tom had 12 apples.", False)],
}
GEMMA_DEPASS_TEXTS = ["<|begin_of_text|>Once upon a time, there was a little girl named Lily.",
                      "<|begin_of_text|>Max wagged his tail and ran to the ball.",
                      "<|begin_of_text|>\"Don't be sad,\" said the kind old man. In 2024 the town had"]
DEPASS_TEXTS = {
    "gemma": GEMMA_DEPASS_TEXTS, "gemma2": GEMMA_DEPASS_TEXTS,
    "qwen2": ["Once upon a time, there was a little girl named Lily.",
              "Max wagged his tail and ran to the ball.",
              "<|im_start|>user\nWhere did the ball go?<|im_end|>\n<|im_start|>assistant\n"],
    "gpt2": ["<|endoftext|>Once upon a time, there was a little girl named Lily.",
             "<|endoftext|>Max wagged his tail and ran to the ball.",
             "<|endoftext|>\"Don't be sad,\" said the kind old man. In 2024 the town had"],
}
DEPASS_TEXTS["gpt_neox"] = DEPASS_TEXTS["gpt_neox_sequential"] = DEPASS_TEXTS["gpt2"]


# ----------------------------------------------------------------------------
# writing the family directories
# ----------------------------------------------------------------------------
def family_files(name, tj):
    """-> (config dict, {tensor: (array, dtype)})."""
    V = bpe.vocab_size(tj)
    if FAMILIES[name] == "llama3":
        bos, eos = bpe.special_id(tj, "<|begin_of_text|>"), bpe.special_id(tj, "<|end_of_text|>")
    elif FAMILIES[name] == "qwen2":
        bos = eos = bpe.special_id(tj, "<|endoftext|>")
    else:
        bos = eos = bpe.special_id(tj, "<|endoftext|>")
    if name in ("llama", "llama_f16"):
        cfg = fam.llama_config(V, bos, eos, tie=False,
                               torch_dtype="float16" if name == "llama_f16" else "float32")
        w = fam.llama_like_weights(cfg, SEEDS["llama"])
        dt = "F16" if name == "llama_f16" else "F32"
        return cfg, {k: (v, dt) for k, v in w.items()}
    if name == "llama3":
        cfg = fam.llama_config(V, bos, eos, tie=True, rope_theta=500000.0,
                               rope_scaling=dict(LLAMA3_ROPE_SCALING))
        w = fam.llama_like_weights(cfg, SEEDS["llama3"], lm_head=False)
        return cfg, {k: (v, "F32") for k, v in w.items()}
    if name == "mistral":
        cfg = fam.mistral_config(V, bos, eos)
        w = fam.llama_like_weights(cfg, SEEDS["mistral"])
        return cfg, {k: (v, "F32") for k, v in w.items()}
    if name in ("qwen2", "qwen2_untied"):
        cfg = fam.qwen2_config(V, bos, eos, tie=(name == "qwen2"))
        w = fam.llama_like_weights(cfg, SEEDS["qwen2"], qkv_bias=True, lm_head=False)
        if name == "qwen2_untied":
            w["lm_head.weight"] = fam.Gen(SEEDS["qwen2_untied_lm_head"]).mat(
                V, cfg["hidden_size"])
        return cfg, {k: (v, "F32") for k, v in w.items()}
    if name == "qwen3":
        cfg = fam.qwen3_config(V, bos, eos)
        w = fam.llama_like_weights(cfg, SEEDS["qwen3"], lm_head=False, qk_norm=True)
        return cfg, {k: (v, "F32") for k, v in w.items()}
    if name == "phi3":
        cfg = fam.phi3_config(V, bos, eos)
        w = fam.fuse_phi3(fam.llama_like_weights(cfg, SEEDS["phi3"]), cfg)
        return cfg, {k: (v, "F32") for k, v in w.items()}
    if name in ("gemma", "gemma2"):
        cfg = (fam.gemma_config if name == "gemma" else fam.gemma2_config)(V, bos, eos)
        w = fam.gemma_weights(cfg, SEEDS[name])
        return cfg, {k: (v, "F32") for k, v in w.items()}
    if name in NEOX:
        # Pythia-like: parallel residual, rotary_pct 0.25, the per-layer buffers real Pythia
        # files hold (to be ignored); the sequential variant: rotary_pct 0.5, no buffers
        par = name == "gpt_neox"
        cfg = fam.gpt_neox_config(V, bos, eos, parallel=par, rotary_pct=0.25 if par else 0.5)
        return cfg, fam.gpt_neox_weights(cfg, SEEDS[name], buffers=par)
    if name in ("gpt2", "gpt2_noprefix"):
        cfg = fam.gpt2_config(V, bos, eos)
        w = fam.gpt2_weights(cfg, SEEDS["gpt2"])
        if name == "gpt2_noprefix":
            P = cfg["n_positions"]
            w = {k[len("transformer."):]: v for k, v in w.items()}
            mask = np.tril(np.ones((P, P), dtype=np.float32)).reshape(1, 1, P, P)
            for l in range(cfg["n_layer"]):
                w["h.%d.attn.bias" % l] = mask
        return cfg, {k: (v, "F32") for k, v in w.items()}
    raise ValueError(name)


def write_data(data_dir):
    tjs, written = {}, {}
    for style in ("llama3", "qwen2", "gpt2"):
        tjs[style] = bpe.build_tokenizer_json(style)
    for name, style in FAMILIES.items():
        d = os.path.join(data_dir, name)
        os.makedirs(d, exist_ok=True)
        tj = tjs[style]
        bpe.write_json_pretty(tj, os.path.join(d, "tokenizer.json"))
        bpe.write_json_pretty(bpe.build_tokenizer_config(style, tj),
                              os.path.join(d, "tokenizer_config.json"))
        cfg, tensors = family_files(name, tj)
        fam.write_config(cfg, os.path.join(d, "config.json"))
        fam.write_safetensors(os.path.join(d, "model.safetensors"), tensors)
        written[name] = tensors
    return tjs, written


# ----------------------------------------------------------------------------
# goldens + checks
# ----------------------------------------------------------------------------
def rel(a, b):
    return ((a - b).abs().max() / b.abs().max()).item()


GREEDY_TOKENS = 8


def greedy(m, ids, count):
    """Greedy continuation in float64: each new token the argmax of the last logits."""
    seq = list(ids)
    with torch.no_grad():
        for _ in range(count):
            seq.append(int(torch.argmax(fam.forward(m, seq)[-1]).item()))
    return seq[len(ids):]


def softcap_fractions(m, ids):
    """How nonlinear Gemma 2's soft caps are on a prompt: the fractions of the attention
    scores (causal pairs, every layer and head) and of the logits (every position and
    vocabulary entry) with |x| / cap > 0.5 (tanh(0.5) = 0.46: 8% below the line), and the
    largest |x| / cap."""
    s, z = fam.softcap_inputs(m, ids)
    ca, cf = m["arch"]["attn_softcap"], m["arch"]["final_softcap"]
    fs, fz = (s.abs() / ca > 0.5).double().mean().item(), (z.abs() / cf > 0.5).double().mean().item()
    ms, mz = (s.abs() / ca).max().item(), (z.abs() / cf).max().item()
    assert fs > 0.1 and fz > 0.05 and mz > 1.0, (fs, fz, mz)
    return dict(fs=fs, fz=fz, text="n=%d: attention |s|/cap > 0.5 for %.1f%% of the scores (max %.2f), "
                "final |z|/cap > 0.5 for %.1f%% of the logits (max %.2f)" % (len(ids), 100 * fs, ms, 100 * fz, mz))


def gemma_logit_notes(name, notes, caps):
    text = ("Gemma%s reference (tools/reference/families.py, written from the published architecture): "
            "embedding * sqrt(hidden), RMSNorm x r (1 + w), head_dim 24, %s, GeGLU (gelu_pytorch_tanh) MLP, "
            "tied unembedding%s. Cross-checks per case: forward_alt (float64) and float32 vs float64 max "
            "|difference|: %s." % (
                " 2" if name == "gemma2" else "",
                "scores * query_pre_attn_scalar^-0.5 (32) soft-capped at attn_logit_softcapping"
                if name == "gemma2" else "scores * head_dim^-0.5",
                ", sandwich norms (post_attention / pre_feedforward / post_feedforward), final logits "
                "soft-capped at final_logit_softcapping" if name == "gemma2" else "",
                "; ".join(n.split(";")[0] for n in notes)))
    if caps:
        text += " Soft-cap nonlinearity: " + "; ".join(c["text"] for c in caps) + "."
    return text


def gemma_depass_notes(name, worst):
    return ("Token-level DePass (softmax, T 0.1, BOS sink) with the Gemma rules: token components = the "
            "scaled embedding rows E[id] sqrt(hidden), norms frozen with the (1 + w) gain%s. Measured "
            "(relative): state vs sum of components %.1e, component logits vs real logits %.1e, score sum "
            "vs target logit %.1e, loop implementation (depass_naive) %.1e." % (
                "; Gemma 2's post-attention / post-feedforward norms frozen with the real block output's "
                "scale (update * r_post * (1 + w_post)); final soft cap frozen per logit: scores = z_m rho, "
                "rho = cap tanh(z / cap) / z = target_logit / target_logit_precap" if name == "gemma2" else "",
                *worst))


def neox_logit_notes(name, m, notes):
    a = m["arch"]
    return ("GPT-NeoX reference (tools/reference/families.py, written from the published architecture, "
            "transformers' GPTNeoXForCausalLM): LayerNorm with bias (eps 1e-5), fused query_key_value "
            "interleaved per head ([N, H, 3 hd]: q | k | v of each head), partial rotary on the first %d of %d "
            "dims of each head (halves layout within them, inv_freq = 10000^(-2i/%d)), scores * head_size^-0.5, "
            "attention.dense with bias, MLP dense_4h_to_h(gelu_erf(dense_h_to_4h(.))), %s residual, "
            "final_layer_norm, untied embed_out%s. Cross-checks per case (alt: forward_alt -- raw fused weights "
            "chunked per head, complex rotary, torch.nn.functional, HF's summation order -- vs forward in float64, "
            "max |difference| / max |logit|; f32: float32 vs float64 logits, max |difference|): %s." % (
                a["rot"], a["hd"], a["rot"],
                "parallel (x + attn(ln1(x)) + mlp(ln2(x)))" if a["parallel"] else
                "sequential (h = x + attn(ln1(x)); h + mlp(ln2(h)))",
                "; the safetensors file also holds the per-layer buffers attention.bias (BOOL), "
                "attention.masked_bias and attention.rotary_emb.inv_freq, which the loader ignores"
                if name == "gpt_neox" else "",
                "; ".join(n.split(";")[0] for n in notes)))


def neox_depass_notes(m, worst):
    return ("Token-level DePass (softmax, T 0.1, BOS sink) with the GPT-NeoX rules: token components = the "
            "embed_in rows (no position component: rotary), LayerNorms frozen as GPT-2's (the LayerNorm bias "
            "to the bias component), real attention probabilities frozen (q/k biases and the partial rotary "
            "act only through them; v bias and dense bias to the bias component), MLP gate parts g_m = norm(C_m) "
            "W1^T (+ b1 for the bias component), b2 to the bias component%s. Measured (relative): state vs sum "
            "of components %.1e, component logits vs real logits %.1e, score sum vs target logit %.1e, loop "
            "implementation (depass_naive) %.1e." % (
                "; parallel residual: the attention and MLP updates of layer l are both computed from the "
                "components at the layer input and both added" if m["arch"]["parallel"] else "", *worst))


def make_all(root, log):
    data_dir = os.path.join(root, "tests", "data", "families")
    gold = os.path.join(root, "tests", "golden")
    os.makedirs(gold, exist_ok=True)
    tjs, written = write_data(data_dir)

    # ---- tokenizers
    toks = {}
    for style, home in TOKENIZER_HOME.items():
        tok = bpe.ByteLevelBPE(os.path.join(root, "tests", "data", home))
        toks[style] = tok
        cases = tokenizer_cases(style, tok)
        for c in cases:
            assert c["decoded"] == expected_decoding(style, c["text"], c["add_bos"]), c
        n_im = sum("ids_without_ignore_merges" in c for c in cases)
        for mname, caught in mutation_report(style, os.path.join(root, "tests", "data", home),
                                             cases):
            log("  mutation %-45s caught by %2d of %d cases" % (mname, caught, len(cases)))
            MISSED.extend([(style, mname)] if caught == 0 else [])
        write_golden({"tokenizer": home, "cases": cases},
                     os.path.join(gold, "tokenizer_bytelevel_%s.json" % style))
        log("tokenizer %-6s vocab %d (%d merges), %d cases, round trips ok%s" % (
            style, bpe.vocab_size(tjs[style]), len(tjs[style]["model"]["merges"]), len(cases),
            (", ignore_merges matters in %d" % n_im) if tok.ignore_merges else ""))
    for name, style in FAMILIES.items():
        p = os.path.join(data_dir, name, "tokenizer.json")
        assert filecmp.cmp(p, os.path.join(root, "tests", "data", TOKENIZER_HOME[style]),
                           shallow=False)

    assert not MISSED, "mutations not caught by the tokenizer goldens: %s" % MISSED

    # ---- safetensors round trip
    for name, tensors in written.items():
        t, dts, meta = fam.read_safetensors(os.path.join(data_dir, name, "model.safetensors"))
        assert meta == {"format": "pt"} and set(t) == set(tensors)
        for k, (arr, dt) in tensors.items():
            want = arr.astype(np.float16 if dt == "F16" else np.float32).astype(np.float64)
            assert dts[k] == dt and np.array_equal(t[k].numpy(), want), (name, k)

    # ---- the \\p{L} / \\p{N} / \\s classes given to Python's re (BMP + SMP)
    cls = {k: bpe.re.compile("[" + v + "]") for k, v in bpe._classes().items()}
    ws = set(bpe.WHITE_SPACE)
    for cp in range(0x20000):
        ch, cat = chr(cp), unicodedata.category(chr(cp))
        assert bool(cls["L"].match(ch)) == (cat in ("Lu", "Ll", "Lt", "Lm", "Lo")), cp
        assert bool(cls["N"].match(ch)) == (cat in ("Nd", "Nl", "No")), cp
        assert bool(cls["s"].match(ch)) == (cp in ws), cp
    log("regex classes: \\p{L}, \\p{N}, \\s agree with unicodedata %s on U+0000-U+1FFFF"
        % unicodedata.unidata_version)

    # ---- llama3 rope scaling
    cfg3 = fam.llama_config(1, 0, 0, True, 500000.0, LLAMA3_ROPE_SCALING)
    base = 1.0 / 500000.0 ** (np.arange(0, 16, 2, dtype=np.float64) / 16)
    _, kinds = fam.llama3_inv_freq(base, cfg3["rope_scaling"])
    assert {"unchanged", "scaled", "smoothed"} <= set(kinds), kinds
    log("llama3 rope (head_dim 16, theta 5e5, original_max 64): wavelengths %s -> %s" % (
        ", ".join("%.1f" % (2 * math.pi / f) for f in base), kinds))

    # ---- logits goldens
    for name, style in FAMILIES.items():
        d = os.path.join(data_dir, name)
        m64 = fam.load_model(d, torch.float64)
        m32 = fam.load_model(d, torch.float32)
        cases, notes, caps = [], [], []
        for text, add_bos in LOGIT_TEXTS[style]:
            ids = toks[style].encode(text, add_special_tokens=add_bos)
            assert 6 <= len(ids) <= 12, (name, text, len(ids))
            with torch.no_grad():
                l64, attn = fam.forward(m64, ids, return_attn=True)
                l32 = fam.forward(m32, ids)
                alt = fam.forward_alt(m64, ids)
            e_alt = rel(alt, l64)
            assert e_alt < 1e-12, (name, e_alt)
            e32 = (l32.double() - l64).abs().max().item()
            assert e32 < 1e-4, (name, e32)
            top = torch.topk(l64[-1], 2).values
            assert torch.argmax(l32[-1]).item() == torch.argmax(l64[-1]).item()
            P = torch.stack([A[:, -1, :] for A in attn])  # [layers, heads, N], last query
            maxp = P.max(-1).values
            ent = -(P.clamp_min(1e-300).log() * P).sum(-1) / math.log(len(ids))
            notes.append("n=%d alt %.1e f32 %.1e top2gap %.3f; last query: max prob %.2f-%.2f, "
                         "entropy/log(n) %.2f-%.2f" % (
                             len(ids), e_alt, e32, (top[0] - top[1]).item(), maxp.min().item(),
                             maxp.max().item(), ent.min().item(), ent.max().item()))
            if m64["arch"].get("final_softcap"):
                caps.append(softcap_fractions(m64, ids))
            cases.append({"ids": ids,
                          "logits_f64": [floats(r) for r in l64],
                          "logits_f32": [floats(r.double()) for r in l32],
                          "greedy_f64": greedy(m64, ids, GREEDY_TOKENS)})
        golden = {"model": "families/" + name, "cases": cases}
        if name in ("gemma", "gemma2"):  # the measured cross-checks (older goldens have no notes)
            golden = {"model": golden["model"], "notes": gemma_logit_notes(name, notes, caps),
                      "cases": cases}
        if name in NEOX:
            golden = {"model": golden["model"], "notes": neox_logit_notes(name, m64, notes), "cases": cases}
        write_golden(golden, os.path.join(gold, "family_%s.json" % name))
        log("family %-13s %s" % (name, "; ".join(notes)))
        for c in caps:
            log("  softcap: " + c["text"])

    # ---- cross-checks between families and with the plain-Llama reference
    import llama as llama_ref  # the other engineer's independent Llama reference
    for name in ("llama", "mistral"):
        d = os.path.join(data_dir, name)
        ref = llama_ref.to_dtype(llama_ref.load_hf_safetensors(d), torch.float64)
        m64 = fam.load_model(d, torch.float64)
        for text, add_bos in LOGIT_TEXTS["llama3"]:
            ids = toks["llama3"].encode(text, add_special_tokens=add_bos)
            with torch.no_grad():
                e = rel(fam.forward(m64, ids), llama_ref.forward(ref, ids))
            assert e < 1e-12, (name, e)
        log("tools/reference/llama.py agrees on %s (rel < 1e-12)" % name)
    ids = toks["gpt2"].encode(LOGIT_TEXTS["gpt2"][0][0], add_special_tokens=False)
    a = fam.forward(fam.load_model(os.path.join(data_dir, "gpt2")), ids)
    b = fam.forward(fam.load_model(os.path.join(data_dir, "gpt2_noprefix")), ids)
    assert torch.equal(a, b)
    ids = toks["llama3"].encode(LOGIT_TEXTS["llama3"][0][0])
    a = fam.forward(fam.load_model(os.path.join(data_dir, "llama")), ids)
    b = fam.forward(fam.load_model(os.path.join(data_dir, "llama_f16")), ids)
    log("gpt2_noprefix == gpt2 exactly; llama_f16 vs llama max |dlogit| %.2e (F16 rounding)"
        % (a - b).abs().max().item())
    m3 = fam.load_model(os.path.join(data_dir, "llama3"))
    a = fam.forward(m3, ids)
    m3["arch"]["inv_freq"] = 1.0 / 500000.0 ** (np.arange(0, 16, 2, dtype=np.float64) / 16)
    d_unscaled = (fam.forward(m3, ids) - a).abs().max().item()
    assert d_unscaled > 1e-3, d_unscaled
    log("llama3: dropping the rope scaling changes the logits by up to %.2e" % d_unscaled)
    neox_checks(data_dir, toks["gpt2"], log)

    # ---- DePass goldens
    for name in ("gpt2", "qwen2", "gemma", "gemma2") + NEOX:
        style = FAMILIES[name]
        m64 = fam.load_model(os.path.join(data_dir, name), torch.float64)
        cases, worst = [], [0.0, 0.0, 0.0, 0.0]
        for text in DEPASS_TEXTS[name]:
            ids = toks[style].encode(text, add_special_tokens=False)
            with torch.no_grad():
                comp, logits, names, info = fam.depass(m64, ids)
                naive = fam.depass_naive(m64, ids)
                real = fam.forward(m64, ids)
            N = len(ids)
            assert torch.equal(logits, real)
            assert info["max_rel_state_err"] < 1e-12 and info["max_rel_logit_err"] < 1e-12, info
            pos = N - 1
            tgt = int(torch.argmax(logits[pos]).item())
            col = comp[:, pos, tgt]
            tl = logits[pos, tgt].item()
            sum_err = abs(col.sum().item() - tl) / abs(tl)
            assert sum_err < 1e-12, sum_err
            e_naive = ((naive - comp).abs().max() / comp.abs().max()).item()
            assert e_naive < 1e-12, e_naive
            top2 = torch.topk(logits[pos], 2).values
            case = {"ids": ids, "position": pos, "target": tgt, "target_logit": tl,
                    "scores": floats(col[:N])}
            if name == "gpt2":
                case["position_score"] = col[N].item()
            case["bias_score"] = col[-1].item()
            case["target_top2_gap"] = (top2[0] - top2[1]).item()
            if m64["arch"].get("final_softcap"):  # Gemma 2: z, with scores = z_m rho, rho = target_logit / z
                z = fam.softcap_inputs(m64, ids)[1][pos, tgt].item()
                case["target_logit_precap"] = z
                assert abs(fam.softcap(torch.tensor(z, dtype=torch.float64), m64["arch"]["final_softcap"]).item() - tl) < 1e-14
            cases.append(case)
            worst = [max(worst[0], info["max_rel_state_err"]), max(worst[1], info["max_rel_logit_err"]),
                     max(worst[2], sum_err), max(worst[3], e_naive)]
        golden = {"model": "families/" + name, "temperature": Param(0.1), "bos_sink": True, "cases": cases}
        if name in ("gemma", "gemma2"):
            golden = dict({"model": golden["model"], "notes": gemma_depass_notes(name, worst)},
                          **{k: v for k, v in golden.items() if k != "model"})
        if name in NEOX:
            golden = dict({"model": golden["model"], "notes": neox_depass_notes(m64, worst)},
                          **{k: v for k, v in golden.items() if k != "model"})
        write_golden(golden, os.path.join(gold, "family_depass_%s.json" % name))
        log("depass %-6s %d cases: state err %.1e, logit err %.1e, score-sum err %.1e, "
            "loop impl %.1e (all relative)" % (name, len(cases), *worst))

    for name in FAMILIES:
        d = os.path.join(data_dir, name)
        size = sum(os.path.getsize(os.path.join(d, f)) for f in os.listdir(d))
        log("dir %-13s %7d bytes (model.safetensors %d)" % (
            name, size, os.path.getsize(os.path.join(d, "model.safetensors"))))


def neox_checks(data_dir, tok, log):
    """GPT-NeoX: the boundary states as defined (2l+1 = x + attention output, also for the
    parallel model), the partial rotary matters (zeroing inv_freq changes the logits), only
    the rotary dims rotate (a rotary on all head dims changes them), the loader ignored the
    buffers of gpt_neox (present in the file)."""
    ids = tok.encode(LOGIT_TEXTS["gpt2"][0][0], add_special_tokens=False)
    for name in NEOX:
        m = fam.load_model(os.path.join(data_dir, name))
        logits, hid = fam.forward(m, ids, return_hidden=True)
        x = fam.embed(m, ids)
        for l in range(fam.n_layers(m)):
            att = fam.attention_real(m, l, x)["out"]
            assert torch.equal(hid[2 * l + 1], x + att)
            x = hid[2 * l + 2]
        a = m["arch"]
        m0 = dict(m, arch=dict(a, inv_freq=a["inv_freq"] * 0))
        d_rot = (fam.forward(m0, ids) - logits).abs().max().item()
        full = dict(m, arch=dict(a, rot=a["hd"], inv_freq=1.0 / 10000.0 ** (np.arange(0, a["hd"], 2) / a["hd"])))
        d_full = (fam.forward(full, ids) - logits).abs().max().item()
        assert d_rot > 1e-3 and d_full > 1e-3, (d_rot, d_full)
        _, dts, _ = fam.read_safetensors(os.path.join(data_dir, name, "model.safetensors"))
        n_buf = sum(1 for k in dts if any(k.endswith(b) for b in fam.NEOX_BUFFERS))
        assert n_buf == (3 * fam.n_layers(m) if name == "gpt_neox" else 0), n_buf
        assert ("BOOL" in dts.values()) == (name == "gpt_neox")
        log("%s: boundaries 2l+1 = x + attention output; no rotary changes the logits by %.2e, rotary on all "
            "%d dims by %.2e; %d buffers ignored" % (name, d_rot, a["hd"], d_full, n_buf))


OUTPUTS_DATA = "tests/data/families"
OUTPUTS_GOLDEN = (["tokenizer_bytelevel_%s.json" % s for s in ("gpt2", "llama3", "qwen2")]
                  + ["family_%s.json" % n for n in FAMILIES]
                  + ["family_depass_%s.json" % n for n in ("gpt2", "qwen2", "gemma", "gemma2") + NEOX])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", default=os.path.dirname(os.path.dirname(HERE)))
    ap.add_argument("--check", action="store_true",
                    help="regenerate into a temp dir and compare with the committed files")
    args = ap.parse_args()
    if not args.check:
        make_all(args.root, print)
        return
    tmp = tempfile.mkdtemp()
    try:
        make_all(tmp, lambda s: None)
        bad = []
        for name in FAMILIES:
            for f in ("config.json", "model.safetensors", "tokenizer.json",
                      "tokenizer_config.json"):
                rp = os.path.join(OUTPUTS_DATA, name, f)
                if not filecmp.cmp(os.path.join(tmp, rp), os.path.join(args.root, rp), False):
                    bad.append(rp)
        for f in OUTPUTS_GOLDEN:
            rp = os.path.join("tests", "golden", f)
            if not filecmp.cmp(os.path.join(tmp, rp), os.path.join(args.root, rp), False):
                bad.append(rp)
        print("differs: %s" % bad if bad else "all %d files identical"
              % (len(FAMILIES) * 4 + len(OUTPUTS_GOLDEN)))
        sys.exit(1 if bad else 0)
    finally:
        shutil.rmtree(tmp)


if __name__ == "__main__":
    main()
