#!/usr/bin/python3
"""Goldens for gradients and the baseline attribution methods (issue 14):
tests/golden/gradients_<model>.json, from the float64 reference in gradients.py.

    /usr/bin/python3 tools/reference/make_gradient_goldens.py [--models DIR] [--only NAME ...] [--check]

NAME: a family directory of tests/data/families (llama, llama3, llama_f16, mistral, qwen2,
qwen2_untied, gpt2, gpt2_noprefix, qwen3, phi3, gemma, gemma2, gpt_neox, gpt_neox_sequential), stories260K,
tinystories656k (these two read the
models directory, default /work/shared/models).  --check regenerates into a temporary
directory and compares with the committed files (numbers to 1e-9 relative).

Asserted while writing (see tools/reference/README.md, "Gradients and baseline methods"):
the hooked forward equals families.forward; the embeddings gradient equals the gradient
taken through a second forward implementation; every kind of gradient agrees with central
finite differences (h = 1e-6) on a few coordinates; exact head / neuron ablation through
the hook equals a rerun with the head's Wo columns / the neuron's W2 column zeroed in the
weights; the IG completeness gap does not grow with the step count; sign agreement of AtP
with the exact ablation for the top-3 heads is reported.
"""
import argparse
import json
import os
import shutil
import sys
import tempfile

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
import families as fam  # noqa: E402
import gradients as gr  # noqa: E402
import llama as llama_ref  # noqa: E402
import make_option_goldens as mo  # noqa: E402
from make_family_goldens import Param, write_golden  # noqa: E402

torch.set_num_threads(1)

ALL = mo.FAMILIES + ["stories260K", "tinystories656k"]
# Short prompts (the files hold full N x D / N x I gradients), BOS-like token first.
PROMPT = {"llama3": ("Lily saw a big red ball.", True),
          "qwen2": ("<|endoftext|>Lily saw a big red ball.", False),
          "gpt2": ("<|endoftext|>Lily saw a big red ball.", False),
          "stories260K": "Lily saw a big red ball.",
          "tinystories656k": "Lily saw a big red ball."}
IG_STEPS = (4, 16, 100)
IG_RULES = ("riemann", "gauss_legendre")
FD_STEP = 1e-6
FD_TOL = 1e-6


def r12(v):
    """12 significant digits, written as the shortest decimal of that float (-0 -> 0)."""
    return Param(float("%.12g" % (float(v) + 0.0)))


def vec(t):
    return [r12(v) for v in t.reshape(-1).tolist()]


def mat(t):
    return [vec(row) for row in t]


# ----------------------------------------------------------------------------
# models and objective cases
# ----------------------------------------------------------------------------
def load(name, models):
    """-> (golden header, families-layout model, llama.py model or None, ids)."""
    header, m, _, tok = mo.load(name, models)
    raw = None
    if isinstance(m, tuple):
        m, raw = m
    if name == "stories260K":
        ids = tok.encode(PROMPT[name], bos=True)
    elif name == "tinystories656k":
        ids = tok.encode(PROMPT[name], add_bos=True)
    else:
        text, bos = PROMPT[mo.STYLE[name]]
        ids = tok.encode(text, add_special_tokens=bos)
    return header, m, raw, ids


def objective_cases(logits):
    """logit of the top-1 at the last position; logprob of the second-ranked token at an
    inner position (N // 2); contrast top-1 - top-2 at the last position."""
    N = logits.shape[0]
    order = lambda p: torch.argsort(logits[p], descending=True).tolist()  # noqa: E731
    last, inner = order(N - 1), order(N // 2)
    return [gr.Objective("logit", N - 1, last[0]),
            gr.Objective("logprob", N // 2, inner[1]),
            gr.Objective("contrast", N - 1, last[0], last[1])]


def stored_gradients(L, case_index):
    """Which boundaries / layers a case's golden holds besides the embeddings (size: the
    full N x D and N x I tensors).  Case 0: residual at b = 1, L (a middle boundary) and
    2L, heads and neurons of the first and the last layer; cases 1 and 2: one tensor of
    each kind -- residual at b = L, heads of the last layer, neurons of the first."""
    if case_index == 0:
        return dict(residual=sorted({1, L, 2 * L}), heads=sorted({0, L - 1}), neurons=sorted({0, L - 1}))
    return dict(residual=[L], heads=[L - 1], neurons=[0])


# ----------------------------------------------------------------------------
# checks
# ----------------------------------------------------------------------------
def finite_difference(m, ids, obj, kind, index, coord, step):
    def f(delta):
        def hook(k, i, t):
            if k == kind and i == index:
                t = t.clone()
                t[coord] = t[coord] + delta
            return t
        return gr.value(m, ids, obj, hook=hook)
    return (f(step) - f(-step)) / (2 * step)


def fd_coordinates(g, rs, p):
    """The largest |g| and two random coordinates among those with |g| >= 0.1 max |g|
    (positions <= p; the rest are exactly zero)."""
    a = g[:p + 1].abs()
    big = torch.nonzero(a >= 0.1 * a.max()).tolist()
    top = [tuple(torch.nonzero(a == a.max())[0].tolist())]
    picks = [tuple(big[i]) for i in rs.choice(len(big), size=min(2, len(big)), replace=False)]
    return top + [c for c in picks if c not in top]


def check_finite_differences(m, ids, obj, G, rs):
    """Central differences on a few coordinates of every kind of gradient; asserts
    relative agreement FD_TOL and returns the largest relative error per kind.  The step
    is FD_STEP times max(1, rms of the perturbed tensor): the final residual states of
    TinyStories-656K have rms ~50, where an absolute 1e-6 step drowns in rounding."""
    L, r = len(G["heads"]), G["run"]
    kinds = [("embeddings", "residual", 0, G["embeddings"], r["residual"][0])]
    kinds += [("residual", "residual", b, G["residual"][b], r["residual"][b]) for b in range(1, 2 * L + 1)]
    kinds += [("heads", "heads", l, G["heads"][l], r["heads"][l]) for l in range(L)]
    kinds += [("neurons", "neurons", l, G["neurons"][l], r["neurons"][l]) for l in range(L)]
    worst = {}
    for label, kind, index, g, t in kinds:
        step = FD_STEP * max(1.0, (t * t).mean().sqrt().item())
        for c in fd_coordinates(g, rs, obj.position):
            fd = finite_difference(m, ids, obj, kind, index, c, step)
            err = abs(fd - g[c].item()) / abs(g[c].item())
            assert err < FD_TOL, (label, index, c, fd, g[c].item(), err)
            worst[label] = max(worst.get(label, 0.0), err)
        # positions after p cannot change f
        assert bool((g[obj.position + 1:] == 0).all()), (label, index)
    return worst


def second_implementation_gradient(m, raw, ids, obj):
    """df/dx0 through another forward implementation (families.forward_alt, or llama.py's
    forward for the llama.py models): GPT-2 via the learned position rows (x0 = wte[ids] +
    wpe[:N]), the others via an embedding matrix used only for the lookup (rows summed
    over repeated ids).  Returns (gradient as [N, D] or per-id sums, how to compare)."""
    N = len(ids)
    if m["arch"]["kind"] == "gpt2":
        wpe = m["wpe"].clone().requires_grad_(True)
        f = obj(fam.forward_alt(dict(m, wpe=wpe), ids))
        return torch.autograd.grad(f, wpe)[0][:N]
    if raw is not None:
        E = raw["embed"].clone().requires_grad_(True)
        f = obj(llama_ref.forward(dict(raw, embed=E), ids))
    else:
        E = m["embed"].clone().requires_grad_(True)
        f = obj(fam.forward_alt(dict(m, embed=E), ids))
    return torch.autograd.grad(f, E)[0]


def check_second_implementation(m, raw, ids, obj, g_emb):
    alt = second_implementation_gradient(m, raw, ids, obj)
    if m["arch"]["kind"] != "gpt2":  # scatter our per-position gradient onto the vocabulary rows
        if m["arch"].get("embed_scale") is not None:  # Gemma: x0 = E[ids] sqrt(D), dx0/dE = sqrt(D)
            g_emb = g_emb * m["arch"]["embed_scale"]
        ours = torch.zeros_like(alt).index_add_(0, torch.tensor(ids), g_emb)
        rows = sorted(set(ids))
        alt, g_emb = alt[rows], ours[rows]
    err = ((alt - g_emb).abs().max() / g_emb.abs().max()).item()
    assert err < 1e-12, err
    return err


def masked_weights(m, kind, l, unit):
    """A copy of the model with head `unit` of layer l (its Wo input columns) or neuron
    `unit` (its W2 column) zeroed in the weights (README, "Gradients and baseline methods")."""
    m2 = dict(m, layers=list(m["layers"]))
    L = dict(m2["layers"][l])
    gpt2 = m["arch"]["kind"] == "gpt2"
    d = m["arch"]["hd"]
    if kind == "heads":
        key = "attn.c_proj.weight" if gpt2 else "wo"
        w = L[key].clone()
        if gpt2:
            w[unit * d:(unit + 1) * d, :] = 0
        else:
            w[:, unit * d:(unit + 1) * d] = 0
    else:
        key = "mlp.c_proj.weight" if gpt2 else "wd"
        w = L[key].clone()
        if gpt2:
            w[unit, :] = 0
        else:
            w[:, unit] = 0
    L[key] = w
    m2["layers"][l] = L
    return m2


def check_ablation(m, ids, obj, G, heads, neurons, l_neurons):
    """Two ablation entries against reruns with masked weights (families.forward)."""
    L, H = heads["ablation"].shape
    worst = 0.0
    for kind, l, unit, got in (("heads", L - 1, H - 1, heads["ablation"][L - 1, H - 1]),
                               ("heads", 0, 0, heads["ablation"][0, 0]),
                               ("neurons", l_neurons, 3, neurons["ablation"][3])):
        with torch.no_grad():
            f = obj(fam.forward(masked_weights(m, kind, l, unit), ids)).item()
        err = abs((G["value"] - f) - got.item())
        assert err < 1e-12 * max(1.0, abs(G["value"])), (kind, l, unit, err)
        worst = max(worst, err)
    return worst


def check_ig_gaps(gaps, base, scale):
    """On a smooth path (the baseline-ids runs): Gauss-Legendre's gap falls with every step
    count; both rules' gaps are smaller at 100 steps than at 4 and below 1e-3 of
    max(1, |f(x0) - f(x')|) there.  (The midpoint rule's error term changes sign, so a
    lucky 16 may beat 100: no ordering asserted between those.)"""
    gl = [abs(gaps[(base, "gauss_legendre", s)]) for s in IG_STEPS]
    mid = [abs(gaps[(base, "riemann", s)]) for s in IG_STEPS]
    assert gl[0] > gl[1] > gl[2], gl
    for seq in (gl, mid):
        assert seq[2] < seq[0] and seq[2] < 1e-3 * max(1.0, scale), seq


def top3_sign_agreement(heads):
    ab, atp = heads["ablation"].reshape(-1), heads["atp"].reshape(-1)
    top = torch.argsort(ab.abs(), descending=True)[:3].tolist()
    return sum(1 for i in top if (ab[i] > 0) == (atp[i] > 0))


# ----------------------------------------------------------------------------
# one case, one model
# ----------------------------------------------------------------------------
def objective_json(obj):
    o = {"objective": obj.kind, "position": obj.position, "target": obj.target}
    if obj.foil is not None:
        o["foil"] = obj.foil
    return o


def make_case(m, raw, ids, obj, case_index, rs, log):
    L = fam.n_layers(m)
    G = gr.gradients(m, ids, obj)
    worst_fd = check_finite_differences(m, ids, obj, G, rs)
    e_alt = check_second_implementation(m, raw, ids, obj, G["embeddings"])
    x0, attn, p = G["run"]["residual"][0], G["run"]["attn"], obj.position
    keep = stored_gradients(L, case_index)
    c = objective_json(obj)
    c["value"] = r12(G["value"])
    c["gradients"] = {
        "embeddings": mat(G["embeddings"]),
        "residual": [{"boundary": b, "values": mat(G["residual"][b])} for b in keep["residual"]],
        "heads": [{"layer": l, "values": mat(G["heads"][l])} for l in keep["heads"]],
        "neurons": [{"layer": l, "values": mat(G["neurons"][l])} for l in keep["neurons"]]}
    tokens = {"attention_last": vec(gr.attention_last(attn, p)), "attention_mean": vec(gr.attention_mean(attn, p)),
              "rollout": vec(gr.rollout(attn, p)), "grad_norm": vec(gr.grad_norm(G["embeddings"])),
              "input_x_grad": vec(gr.input_x_grad(x0, G["embeddings"])),
              "occlusion": vec(gr.occlusion(m, ids, obj)), "ig": []}
    gaps = {}
    for base_name, base_ids in (("zero", None), ("ids", [ids[0]] * len(ids))):
        xb = None if base_ids is None else fam.embed(m, base_ids)
        for rule in IG_RULES:
            for steps in IG_STEPS:
                attr, gap, f_base = gr.integrated_gradients(m, ids, obj, steps, rule, baseline=xb)
                gaps[(base_name, rule, steps)] = gap
                e = {"rule": rule, "steps": steps, "baseline": base_name}
                if base_ids is not None:
                    e["baseline_ids"] = base_ids
                e.update({"scores": vec(attr), "completeness_gap": r12(gap), "baseline_value": r12(f_base)})
                tokens["ig"].append(e)
        if base_ids is not None:
            check_ig_gaps(gaps, base_name, abs(G["value"] - f_base))
    c["tokens"] = tokens
    heads = gr.head_methods(m, ids, obj, G)
    neurons = gr.neuron_methods(m, ids, obj, G, L - 1)
    e_abl = check_ablation(m, ids, obj, G, heads, neurons, L - 1)
    c["heads"] = {k: mat(v) for k, v in heads.items()}
    c["neurons"] = dict({"layer": L - 1}, **{k: vec(v) for k, v in neurons.items()})
    agree = top3_sign_agreement(heads)
    e_par = 0.0
    if fam.is_parallel(m):  # GPT-NeoX parallel residual: df/dx at 2l+1 == df/dx at 2l+2
        for l in range(L):
            e_par = max(e_par, (G["residual"][2 * l + 1] - G["residual"][2 * l + 2]).abs().max().item())
        assert e_par == 0.0 or e_par < 1e-15 * G["residual"][2 * L].abs().max().item(), e_par
    log("  %-8s p=%-2d t=%-4s f=%+.6f  FD max rel %s  2nd impl %.1e  ablation vs masked weights %.1e"
        % (obj.kind, p, obj.target, G["value"], " ".join("%s %.1e" % kv for kv in worst_fd.items()), e_alt, e_abl))
    for base in ("zero", "ids"):
        log("           IG gaps, baseline %-4s: " % base
            + "  ".join("%s%d %+.1e" % (r[0], s, gaps[(base, r, s)]) for r in IG_RULES for s in IG_STEPS))
    log("           top-3 heads (by |ablation|): atp has the same sign for %d/3" % agree)
    return c, dict(fd=worst_fd, alt=e_alt, gaps=gaps, agree=agree, ablation=e_abl, par=e_par)


def dims(m, ids):
    a = m["arch"]
    I = fam.mlp_real(m, 0, fam.embed(m, ids[:1]))["act"].shape[1]
    return {"layers": fam.n_layers(m), "hidden": a["D"], "heads": a["H"], "kv_heads": a["G"],
            "head_dim": a["hd"], "intermediate": I, "vocab": a["vocab"]}


def make_one(name, models, out_dir, log):
    header, m, raw, ids = load(name, models)
    with torch.no_grad():
        logits = fam.forward(m, ids)
        mine = gr.run(m, ids)["logits"]
    e = ((mine - logits).abs().max() / logits.abs().max()).item()
    assert e < 1e-13, e
    log("%s: %d ids, %s; hooked forward vs families.forward %.1e" % (name, len(ids), dims(m, ids), e))
    rs = np.random.RandomState(14)
    golden = dict(header)
    golden["notes"] = ("Gradients of a scalar objective and the baseline attribution methods, float64, "
                       "from tools/reference/gradients.py; definitions and schema in tools/reference/README.md "
                       "(\"Gradients and baseline methods\"). Numbers rounded to 12 significant digits.")
    golden["dims"] = dims(m, ids)
    golden["ids"] = ids
    golden["cases"], stats = [], []
    for i, obj in enumerate(objective_cases(logits)):
        c, s = make_case(m, raw, ids, obj, i, rs, log)
        golden["cases"].append(c)
        stats.append(s)
    if name in mo.NEOX:
        par = fam.is_parallel(m)
        golden["notes"] += (
            " GPT-NeoX: x0 (boundary 0) is the embed_in rows (rotary, no position rows); LayerNorms with bias, "
            "erf GELU, untied embed_out.%s Measured: finite differences vs autograd max relative %.1e; df/dE "
            "through families.forward_alt (raw fused query_key_value, complex rotary) %.1e relative; exact "
            "ablation through the hook vs masked weights %.1e%s." % (
                " Parallel residual: boundary 2l+1 is the state x_in + attention output, an additive intermediate "
                "that layer l's MLP (reading x_in) does not read, so the gradient there equals the gradient at "
                "boundary 2l+2 (the layer output); the heads' z and the neurons' a are those of the parallel "
                "layer (the MLP's input is the layer input)." if par else "",
                max(v for st in stats for v in st["fd"].values()), max(st["alt"] for st in stats),
                max(st["ablation"] for st in stats),
                "; gradient at 2l+1 vs 2l+2 max |difference| %.1e" % max(st["par"] for st in stats) if par else ""))
    if name in ("gemma", "gemma2"):  # the measured cross-checks (the older files have none)
        golden["notes"] += (
            " Gemma: x0 (boundary 0) is the scaled embedding output E[ids] sqrt(hidden)%s. Measured: "
            "finite differences vs autograd max relative %.1e; df/dE through families.forward_alt "
            "%.1e relative; exact ablation through the hook vs masked weights %.1e." % (
                "; logits soft-capped; attention methods read the post-cap probabilities; head / neuron "
                "norm through the frozen post-attention / post-feedforward norm (||write * r_out[p] (1 + w)||)"
                if name == "gemma2" else "",
                max(v for st in stats for v in st["fd"].values()), max(st["alt"] for st in stats),
                max(st["ablation"] for st in stats)))
    path = os.path.join(out_dir, "gradients_%s.json" % name)
    write_golden(golden, path)
    log("  wrote %s (%d bytes)" % (os.path.basename(path), os.path.getsize(path)))
    return stats


# ----------------------------------------------------------------------------
def close_json(a, b):
    """Structural equality with floats to 1e-9 relative (for --check)."""
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(close_json(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(close_json(x, y) for x, y in zip(a, b))
    if isinstance(a, float) or isinstance(b, float):
        return abs(a - b) <= 1e-9 * max(1e-3, abs(a), abs(b))
    return a == b


def summarise(all_stats, log):
    fd = max(v for st in all_stats.values() for s in st for v in s["fd"].values())
    log("largest finite-difference relative error: %.1e (tolerance %.0e)" % (fd, FD_TOL))
    full = [n for n, st in all_stats.items() if any(s["agree"] == 3 for s in st)]
    if full:
        log("AtP and ablation agree in sign for the top-3 heads in at least one case of: %s" % ", ".join(full))
    else:
        log("WARNING: no model where AtP and ablation agree in sign for all top-3 heads")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default="/work/shared/models")
    ap.add_argument("--only", nargs="*", choices=ALL, default=None)
    ap.add_argument("--check", action="store_true")
    args = ap.parse_args()
    names = args.only or ALL
    gold = os.path.join(ROOT, "tests", "golden")
    if not args.check:
        summarise({n: make_one(n, args.models, gold, print) for n in names}, print)
        return
    tmp = tempfile.mkdtemp()
    try:
        bad = []
        for n in names:
            make_one(n, args.models, tmp, lambda s: None)
            f = "gradients_%s.json" % n
            if not close_json(json.load(open(os.path.join(tmp, f))), json.load(open(os.path.join(gold, f)))):
                bad.append(f)
        print("differs: %s" % bad if bad else "all %d files agree" % len(names))
        sys.exit(1 if bad else 0)
    finally:
        shutil.rmtree(tmp)


if __name__ == "__main__":
    main()
