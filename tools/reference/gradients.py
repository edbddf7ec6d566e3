#!/usr/bin/python3
"""Float64 autograd reference for gradients of a scalar objective, and reference
implementations of the baseline attribution methods of issue 14 (attention, rollout,
gradient norm, input x gradient, integrated gradients, occlusion; AtP, output norm, exact
ablation for heads and neurons).

Written from the architectures and the method definitions in tools/reference/README.md
("Gradients and baseline methods"), not from the project C++.  The model is the one of
families.py (every family; llama.py models through make_option_goldens.from_llama_ref):
`run` composes its real blocks (`families.attention_real`, `families.mlp_real`) and only
re-applies the output projections, so that the per-head mixed values z and the neuron
values a are tensors of the autograd graph that a hook may read or replace.

Notation: N positions, D width, L layers, H heads of width d, I neurons.  Boundaries
b = 0..2L: b = 2l is the residual state entering layer l's attention, 2l+1 entering its
MLP, 2L the final state before the final norm; b = 0 is the embedding output x0.  GPT-NeoX
with the parallel residual: 2l+1 is x_in + attention output, which the MLP (reading x_in)
does not read; df/dx at 2l+1 is then df/dx at 2l+2.
"""
import numpy as np
import torch

import families as fam


def identity_hook(kind, index, t):
    return t


def run(m, ids, x0=None, hook=identity_hook):
    """The forward pass with its intermediates.  x0 [N, D] replaces the embedding output
    (default `families.embed`).  hook(kind, index, t) -> t may read or replace
    ("residual", b) for b = 0..2L, ("heads", l): z [N, H*d] (head h = columns h*d..h*d+d-1,
    A_h V_kv(h) with V's bias), and ("neurons", l): a [N, I].  Returns dict(logits [N, V],
    residual: 2L+1 states, heads: L z's, neurons: L a's, attn: L probabilities [H, N, N])."""
    x = fam.embed(m, ids) if x0 is None else x0
    out = dict(residual=[], heads=[], neurons=[], attn=[])
    L = fam.n_layers(m)
    for b in range(2 * L):
        x = hook("residual", b, x)
        out["residual"].append(x)
        l, V = b // 2, fam.layer_view(m, b // 2)
        if b % 2 == 0:
            x_in = x  # the layer input: a parallel-residual MLP reads it
            real = fam.attention_real(m, l, x)
            z = hook("heads", l, real["mixed"])
            out["heads"].append(z)
            out["attn"].append(real["A"])
            if V["out1"] is None:
                x = x + z @ V["Wo"] + (V["bo"] if V["bo"] is not None else 0)
            else:  # Gemma 2: the post-attention norm on the block's output (live, not frozen)
                x = x + fam.out_norm(m, z @ V["Wo"] + (V["bo"] if V["bo"] is not None else 0), V["out1"])[0]
        else:
            # GPT-NeoX parallel residual: the MLP reads the layer input (boundary 2l); the state at
            # 2l+1 (x_in + attention output) only passes on additively, so its gradient equals
            # the layer output's
            a = hook("neurons", l, fam.mlp_real(m, l, x_in if fam.is_parallel(m) else x)["act"])
            out["neurons"].append(a)
            if V["out2"] is None:
                x = x + a @ V["W2"] + (V["b2"] if V["b2"] is not None else 0)
            else:  # Gemma 2: the post-feedforward norm
                x = x + fam.out_norm(m, a @ V["W2"] + (V["b2"] if V["b2"] is not None else 0), V["out2"])[0]
    x = hook("residual", 2 * L, x)
    out["residual"].append(x)
    (gain, off), U = fam.final_view(m)
    y = fam.norm_linear(m, x, fam.norm_scale(m, x), gain) + (off if off is not None else 0)
    out["logits"] = fam.cap_logits(m, y @ U.T)[0]  # Gemma 2: soft-capped
    return out


# ----------------------------------------------------------------------------
# objectives
# ----------------------------------------------------------------------------
class Objective:
    """f = logit(target) | log_softmax(logits)[target] | logit(target) - logit(foil),
    all read at `position`."""

    def __init__(self, kind, position, target, foil=None):
        assert kind in ("logit", "logprob", "contrast"), kind
        assert (foil is not None) == (kind == "contrast")
        self.kind, self.position, self.target, self.foil = kind, position, target, foil

    def __call__(self, logits):
        row = logits[self.position]
        if self.kind == "logit":
            return row[self.target]
        if self.kind == "logprob":
            return torch.log_softmax(row, dim=-1)[self.target]
        return row[self.target] - row[self.foil]


def value(m, ids, obj, x0=None, hook=identity_hook):
    with torch.no_grad():
        return obj(run(m, ids, x0, hook)["logits"]).item()


# ----------------------------------------------------------------------------
# gradients
# ----------------------------------------------------------------------------
def gradients(m, ids, obj, x0=None):
    """All four kinds of gradient of f at once.  Returns dict(value, embeddings [N, D],
    residual: 2L+1 tensors [N, D] (residual[0] is embeddings), heads: L tensors [N, H*d],
    neurons: L tensors [N, I], run: the forward's intermediates, detached)."""
    x0 = (fam.embed(m, ids) if x0 is None else x0).detach().clone().requires_grad_(True)
    r = run(m, ids, x0)
    f = obj(r["logits"])
    L = len(r["heads"])
    g = torch.autograd.grad(f, r["residual"] + r["heads"] + r["neurons"])
    detached = {k: ([t.detach() for t in v] if isinstance(v, list) else v.detach()) for k, v in r.items()}
    return dict(value=f.item(), embeddings=g[0], residual=list(g[:2 * L + 1]),
                heads=list(g[2 * L + 1:3 * L + 1]), neurons=list(g[3 * L + 1:]), run=detached)


def embedding_gradient(m, ids, obj, x0):
    """(f, df/dx0) at an arbitrary embedding output x0."""
    x = x0.detach().clone().requires_grad_(True)
    f = obj(run(m, ids, x)["logits"])
    return f.item(), torch.autograd.grad(f, x)[0]


# ----------------------------------------------------------------------------
# token-level methods (one score per input position)
# ----------------------------------------------------------------------------
def attention_last(attn, p):
    """mean over heads of the last layer's probabilities at query row p."""
    return attn[-1][:, p, :].mean(0)


def attention_mean(attn, p):
    """the same averaged over all layers."""
    return torch.stack([A[:, p, :].mean(0) for A in attn]).mean(0)


def rollout(attn, p):
    """Abnar & Zuidema: R = Â_{L-1} @ ... @ Â_0, Â_l = 0.5 mean_h A_h + 0.5 I with rows
    renormalised; score = R[p]."""
    N = attn[0].shape[-1]
    eye = torch.eye(N, dtype=attn[0].dtype)
    R = eye
    for A in attn:
        Ah = 0.5 * A.mean(0) + 0.5 * eye
        Ah = Ah / Ah.sum(-1, keepdim=True)
        R = Ah @ R
    return R[p]


def grad_norm(g_emb):
    return g_emb.norm(dim=-1)


def input_x_grad(x0, g_emb):
    return (x0 * g_emb).sum(-1)


def quadrature(rule, steps):
    """Nodes alpha_k in (0, 1) and weights w_k (sum 1) for the integral over alpha."""
    if rule == "riemann":  # midpoint rule
        k = np.arange(steps, dtype=np.float64)
        return (k + 0.5) / steps, np.full(steps, 1.0 / steps)
    assert rule == "gauss_legendre", rule
    x, w = np.polynomial.legendre.leggauss(steps)
    return (x + 1.0) / 2.0, w / 2.0


def integrated_gradients(m, ids, obj, steps, rule, baseline=None):
    """attribution_i = sum_d (x0 - x')[i, d] * sum_k w_k df/dx[i, d](x' + alpha_k (x0 - x')).
    Returns (attributions [N], completeness gap = sum attributions - (f(x0) - f(x')),
    f(x'))."""
    x0 = fam.embed(m, ids)
    xb = torch.zeros_like(x0) if baseline is None else baseline
    delta = x0 - xb
    alphas, weights = quadrature(rule, steps)
    total = torch.zeros_like(x0)
    for alpha, w in zip(alphas.tolist(), weights.tolist()):
        total = total + w * embedding_gradient(m, ids, obj, xb + alpha * delta)[1]
    attr = (delta * total).sum(-1)
    f_x, f_b = value(m, ids, obj, x0), value(m, ids, obj, xb)
    return attr, attr.sum().item() - (f_x - f_b), f_b


def occlusion(m, ids, obj):
    """f(x0) - f(x0 with row i of the token embedding replaced by zeros); the learned
    position vector (GPT-2) stays; positions after obj.position score 0 unrun."""
    x0 = fam.embed(m, ids)
    N = x0.shape[0]
    rest = m["wpe"][:N] if m["arch"]["kind"] == "gpt2" else torch.zeros_like(x0)
    f = value(m, ids, obj, x0)
    out = torch.zeros(N, dtype=x0.dtype)
    for i in range(obj.position + 1):
        x = x0.clone()
        x[i] = rest[i]
        out[i] = f - value(m, ids, obj, x)
    return out


# ----------------------------------------------------------------------------
# component-level methods (heads: [L, H]; neurons of one layer: [I])
# ----------------------------------------------------------------------------
def zero_columns_hook(kind, index, cols):
    def hook(k, i, t):
        if k == kind and i == index:
            t = t.clone()
            t[:, cols] = 0
        return t
    return hook


def out_gain(m, V, pre, gain, p):
    """What a unit's write into the residual stream at position p is multiplied by: 1
    without an output norm; Gemma 2: the post norm frozen at the real block output `pre`
    (before that norm), r_out[p] * (1 + w)."""
    if gain is None:
        return 1.0
    return fam.rms_scale(pre[p], m["arch"]["eps"]) * gain


def head_methods(m, ids, obj, G):
    """G: the result of `gradients`.  atp: sum over positions and the head's columns of
    grad_z * z; atp_mean: the same with z - mean over positions of z; norm: ||z_h[p]
    Wo_h^T|| at p = obj.position (Gemma 2: ||z_h[p] Wo_h^T * r_out[p] (1 + w_post)||, the
    head's write through the frozen post-attention norm); ablation: f(clean) - f(head's z
    columns zeroed)."""
    a = m["arch"]
    H, d, p = a["H"], a["hd"], obj.position
    L = len(G["heads"])
    res = {k: torch.zeros(L, H, dtype=torch.float64) for k in ("atp", "atp_mean", "norm", "ablation")}
    for l in range(L):
        V = fam.layer_view(m, l)
        z, gz, Wo = G["run"]["heads"][l], G["heads"][l], V["Wo"]
        zc = z - z.mean(0, keepdim=True)
        post = out_gain(m, V, z @ Wo + (V["bo"] if V["bo"] is not None else 0), V["out1"], p)
        for h in range(H):
            cols = slice(h * d, (h + 1) * d)
            res["atp"][l, h] = (gz[:, cols] * z[:, cols]).sum()
            res["atp_mean"][l, h] = (gz[:, cols] * zc[:, cols]).sum()
            res["norm"][l, h] = ((z[p, cols] @ Wo[cols, :]) * post).norm()
            res["ablation"][l, h] = G["value"] - value(m, ids, obj, hook=zero_columns_hook("heads", l, cols))
    return res


def neuron_methods(m, ids, obj, G, l):
    """The same for the neurons of layer l: atp = sum over positions of grad_a[:, k] a[:, k];
    norm = |a[p, k]| ||W2[:, k]|| (Gemma 2: ||W2[:, k] * r_out[p] (1 + w_post)||, through the
    frozen post-feedforward norm); ablation = f(clean) - f(neuron k zeroed everywhere)."""
    act, ga = G["run"]["neurons"][l], G["neurons"][l]
    V = fam.layer_view(m, l)
    W2 = V["W2"]  # [I, D]: row k is the neuron's output direction
    p, I = obj.position, act.shape[1]
    if V["out2"] is not None:
        W2 = W2 * out_gain(m, V, act @ W2 + (V["b2"] if V["b2"] is not None else 0), V["out2"], p)
    abl = torch.tensor([G["value"] - value(m, ids, obj, hook=zero_columns_hook("neurons", l, k))
                        for k in range(I)], dtype=torch.float64)
    return dict(atp=(ga * act).sum(0), atp_mean=(ga * (act - act.mean(0, keepdim=True))).sum(0),
                norm=act[p].abs() * W2.norm(dim=1), ablation=abl)
