#!/usr/bin/python3
"""Independent float64 reference of DePass token-level attribution, written from
/work/shared/docs/depass-method.md (not from the C++ library).

Components: C has shape [N + 1, N, D]: C[m] for m < N is the embedding of input token m
at position m and zero elsewhere; C[N] is the bias component (zero at start; these
Llama models have no biases, it only receives MLP neurons whose every g_m is exactly 0,
and from then on it is propagated like any other component).

Per layer (x = the real hidden state, updated by the real forward):
  attention: r = 1/sqrt(mean(x^2)+eps) per row (frozen), A[h] = real probabilities,
             V_m = (C[m] * r * w_att) @ Wv^T, out_m[h] = A[h] @ V_m[kv(h)],
             C[m] += concat_h(out_m) @ Wo^T;  x += real attention output.
  MLP:       r frozen from x, a = silu(g) * u real neuron values,
             g_m = (C[m] * r * w_ffn) @ W1^T,
             w_m = split(g_.) over the ELIGIBLE components (g_m != 0 exactly; with
             bos_sink, component 0 is not eligible at positions i > 0),
             C[m] += (w_m * a) @ W2^T;  a neuron with no eligible component goes to C[N];
             x += real MLP output.
  split rules: "softmax"      w = softmax(g_m / T) over eligible m (default T = 0.1)
               "argmax"       whole neuron to the eligible m with largest g_m (ties -> lowest m)
               "proportional" w = g_m / sum_eligible g_m; where that sum nearly cancels,
                              |sum g_m| <= CANCEL_RATIO * sum |g_m| over eligible m, the
                              softmax weights are used instead (docs/method-choices.md: the
                              signed shares would exceed 1/CANCEL_RATIO and amplify rounding).
Output: logits_m = (C[m] * r_final * w_final) @ Wu^T; score of input token m for target t
at position p = logits_m[p, t].

The C++ uses the order "mix with A per head, then Wo once"; here the same order is used
in `depass`, and `depass_naive` (loops, per-head Wo expansion as the published code
does, per-neuron loops) is a second implementation used to cross-check it.
"""
import math
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import llama  # noqa: E402


# Proportional split: below this |sum g| / sum |g| the split falls back to softmax.
CANCEL_RATIO = 1e-3


def split_weights(gm, split="softmax", temperature=0.1, bos_sink=True):
    """gm: [M, N, I] (M includes the bias component as last row).
    Returns weights W [M, N, I] that sum to 1 over M for every (i, k)."""
    M, N, I = gm.shape
    elig = gm != 0
    if bos_sink and N > 1:
        elig[0, 1:, :] = False
    none = ~elig.any(dim=0)  # [N, I]
    neg_inf = torch.tensor(float("-inf"), dtype=gm.dtype)
    z = torch.where(elig, gm / temperature, neg_inf)
    zmax = z.max(dim=0, keepdim=True).values
    zmax = torch.where(torch.isfinite(zmax), zmax, torch.zeros_like(zmax))
    e = torch.where(elig, torch.exp(z - zmax), torch.zeros_like(gm))
    den = e.sum(dim=0, keepdim=True)
    soft = e / torch.where(den > 0, den, torch.ones_like(den))
    if split == "softmax":
        w = soft
    elif split == "argmax":
        z2 = torch.where(elig, gm, neg_inf)
        # argmax returning the first maximal index: take max, then first index equal to it
        mx = z2.max(dim=0, keepdim=True).values
        hit = (z2 == mx) & elig
        idx = torch.arange(M).view(M, 1, 1).expand(M, N, I)
        first = torch.where(hit, idx, torch.full_like(idx, M)).min(dim=0, keepdim=True).values
        w = (idx == first).to(gm.dtype)
    elif split == "proportional":
        s = torch.where(elig, gm, torch.zeros_like(gm)).sum(dim=0, keepdim=True)
        mag = torch.where(elig, gm.abs(), torch.zeros_like(gm)).sum(dim=0, keepdim=True)
        ok = s.abs() > CANCEL_RATIO * mag
        prop = torch.where(elig, gm, torch.zeros_like(gm)) / torch.where(ok, s, torch.ones_like(s))
        w = torch.where(ok, prop, soft)
    else:
        raise ValueError(split)
    w = torch.where(elig, w, torch.zeros_like(w))
    # neurons without any eligible component -> bias component (last row)
    w[M - 1] = torch.where(none, torch.ones_like(w[M - 1]), w[M - 1])
    return w


def depass(model, ids, split="softmax", temperature=0.1, bos_sink=True, check=None):
    """model: float64 model from llama.py. Returns (comp_logits [N+1, N, V], real logits
    [N, V], info dict with max invariant errors)."""
    cfg = model["cfg"]
    dt = model["embed"].dtype
    N, D = len(ids), cfg["dim"]
    eps = cfg["eps"]
    idx = torch.tensor(ids, dtype=torch.long)
    x = model["embed"][idx].clone()
    C = torch.zeros(N + 1, N, D, dtype=dt)
    C[torch.arange(N), torch.arange(N)] = x
    cos, sin = llama.rope_cos_sin(N, cfg["head_dim"], cfg["rope_theta"], dt)
    H, G, hd = cfg["n_heads"], cfg["n_kv_heads"], cfg["head_dim"]
    errs = []

    def err():
        d = (C.sum(0) - x).abs().max().item()
        errs.append(d / max(x.abs().max().item(), 1e-300))

    err()
    for L in model["layers"]:
        # ---- attention
        r = llama.rms_scale(x, eps)
        h = x * r * L["att_norm"]
        A, v = llama.attention_probs(h, L, cfg, cos, sin)
        x = x + llama.attention_mix(A, v, cfg) @ L["wo"].T
        Vm = ((C * r * L["att_norm"]) @ L["wv"].T).reshape(N + 1, N, G, hd).permute(0, 2, 1, 3)
        C = C + llama.attention_mix(A, Vm, cfg) @ L["wo"].T
        err()
        # ---- MLP
        r = llama.rms_scale(x, eps)
        h = x * r * L["ffn_norm"]
        a = llama.silu(h @ L["w1"].T) * (h @ L["w3"].T)
        x = x + a @ L["w2"].T
        gm = (C * r * L["ffn_norm"]) @ L["w1"].T
        w = split_weights(gm, split, temperature, bos_sink)
        C = C + (w * a) @ L["w2"].T
        err()
    r = llama.rms_scale(x, eps)
    logits = (x * r * model["final_norm"]) @ model["wcls"].T
    comp_logits = (C * r * model["final_norm"]) @ model["wcls"].T
    lerr = (comp_logits.sum(0) - logits).abs().max().item() / logits.abs().max().item()
    info = dict(max_rel_state_err=max(errs), state_errs=errs, max_rel_logit_err=lerr)
    return comp_logits, logits, info


def depass_naive(model, ids, split="softmax", temperature=0.1, bos_sink=True):
    """Slow second implementation: explicit loops over components, heads and neurons;
    heads expanded through their Wo slice before mixing (published-code order)."""
    cfg = model["cfg"]
    dt = model["embed"].dtype
    N, D = len(ids), cfg["dim"]
    eps = cfg["eps"]
    H, G, hd = cfg["n_heads"], cfg["n_kv_heads"], cfg["head_dim"]
    rep = H // G
    x = model["embed"][torch.tensor(ids)].clone()
    comps = []
    for m in range(N):
        c = torch.zeros(N, D, dtype=dt)
        c[m] = x[m]
        comps.append(c)
    comps.append(torch.zeros(N, D, dtype=dt))  # bias
    M = N + 1
    cos, sin = llama.rope_cos_sin(N, hd, cfg["rope_theta"], dt)
    for L in model["layers"]:
        r = 1.0 / torch.sqrt((x * x).mean(-1, keepdim=True) + eps)
        h = x * r * L["att_norm"]
        A, v = llama.attention_probs(h, L, cfg, cos, sin)
        attn_out = torch.zeros(N, D, dtype=dt)
        for hh in range(H):
            g = hh // rep
            Wo_h = L["wo"][:, hh * hd:(hh + 1) * hd]
            attn_out += (A[hh] @ v[g]) @ Wo_h.T
        new = []
        for m in range(M):
            vm = (comps[m] * r * L["att_norm"]) @ L["wv"].T
            add = torch.zeros(N, D, dtype=dt)
            for hh in range(H):
                g = hh // rep
                Wo_h = L["wo"][:, hh * hd:(hh + 1) * hd]
                add += A[hh] @ (vm[:, g * hd:(g + 1) * hd] @ Wo_h.T)
            new.append(comps[m] + add)
        comps = new
        x = x + attn_out
        r = 1.0 / torch.sqrt((x * x).mean(-1, keepdim=True) + eps)
        h = x * r * L["ffn_norm"]
        gate = h @ L["w1"].T
        a = gate * torch.sigmoid(gate) * (h @ L["w3"].T)
        x = x + a @ L["w2"].T
        gms = [(comps[m] * r * L["ffn_norm"]) @ L["w1"].T for m in range(M)]
        I = a.shape[1]
        W = torch.zeros(M, N, I, dtype=dt)
        for i in range(N):
            for k in range(I):
                vals = [gms[m][i, k].item() for m in range(M)]
                el = [m for m in range(M) if vals[m] != 0.0 and not (bos_sink and m == 0 and i > 0)]
                if not el:
                    W[M - 1, i, k] = 1.0
                    continue
                mx = max(vals[m] for m in el)
                ex = {m: math.exp((vals[m] - mx) / temperature) for m in el}
                sm = sum(ex.values())
                soft = {m: ex[m] / sm for m in el}
                if split == "softmax":
                    wk = soft
                elif split == "argmax":
                    best = min(el, key=lambda m: (-vals[m], m))
                    wk = {best: 1.0}
                else:
                    s = sum(vals[m] for m in el)
                    mag = sum(abs(vals[m]) for m in el)
                    wk = {m: vals[m] / s for m in el} if abs(s) > CANCEL_RATIO * mag else soft
                for m, wv in wk.items():
                    W[m, i, k] = wv
        comps = [comps[m] + (W[m] * a) @ L["w2"].T for m in range(M)]
    r = 1.0 / torch.sqrt((x * x).mean(-1, keepdim=True) + eps)
    logits = (x * r * model["final_norm"]) @ model["wcls"].T
    comp_logits = torch.stack([(c * r * model["final_norm"]) @ model["wcls"].T for c in comps])
    return comp_logits, logits


def attribute(model, ids, position=None, target=None, **kw):
    """Scores of every input token (and the bias component) for `target` at `position`
    (defaults: last position, the model's top prediction there)."""
    comp_logits, logits, info = depass(model, ids, **kw)
    p = len(ids) - 1 if position is None else position
    t = int(torch.argmax(logits[p]).item()) if target is None else target
    scores = comp_logits[:len(ids), p, t]
    return dict(position=p, target=t, target_logit=float(logits[p, t]),
                scores=[float(s) for s in scores], bias_score=float(comp_logits[-1, p, t]),
                info=info)


if __name__ == "__main__":
    models = sys.argv[1] if len(sys.argv) > 1 else "/work/shared/models"
    from tokenizers import Llama2cTokenizer
    tok = Llama2cTokenizer(os.path.join(models, "stories260K/tok512.bin"))
    m = llama.to_dtype(llama.load_llama2c(os.path.join(models, "stories260K/stories260K.bin")),
                       torch.float64)
    ids = tok.encode("Once upon a time, there was a little", bos=True)
    res = attribute(m, ids)
    print(res["target"], repr(tok.pieces[res["target"]]), res["target_logit"], res["info"])
    for i, s in zip(ids, res["scores"]):
        print("%12s %+.6f" % (tok.pieces[i], s))
