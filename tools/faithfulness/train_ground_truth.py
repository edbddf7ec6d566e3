#!/usr/bin/python3
"""Tiny Llama models trained on synthetic tasks whose evidence positions are known by
construction (issue #15 ground truth), exported in the llama2.c legacy (v0) format.

    nice -n 15 /usr/bin/python3 tools/faithfulness/train_ground_truth.py --task kv|twohop|all

Tasks (one token per symbol; text is symbols separated by spaces):
  kv      key-value retrieval with distractors:
              "a 3 * b f 1 b 7 * b | b"  ->  7
          4-6 pairs "key value" (keys a-p distinct, values 0-9) and 2-3 distractor items
          "* q" that repeat the QUERY key q (they draw key-matching attention but carry no
          answer). Evidence: the position of the matching key and of its value.
  twohop  two hops: pointers (letters q-z) name keys (a-p), keys hold values (0-9):
              "c 3 , a 5 , b 2 , y b , x a , | x"  ->  5
          3-4 key statements (random order), then 2 pointer statements (random order)
          naming 2 of the keys; the other keys are distractors. Evidence: the pointer
          statement's two tokens (x, a) and the key statement's two tokens (a, 5).
The prompt ends with the queried key itself (no "->" token after it, which would make the
last position first fetch the key from its neighbour: one more composition to learn; the
first attempts with "->" were stuck at chance within the time budget). Training sequences
carry 1-6 queries "| q answer" with a loss on each answer (twohop: half of them ask a
key directly, one hop, which teaches the key -> value step the two-hop answer reuses; the
model did not get past chance in 900 steps without them), and half of every batch is
auxiliary induction data (random symbols repeated, loss on the repeat): without it the kv
model sat on a loss plateau for > 1000 steps; with it, it learns in a few hundred. The
test prompts end at the FIRST query's key and never occur in training.

Model (the reference's Llama: RMSNorm eps 1e-5, RoPE on adjacent pairs theta 1e4, SwiGLU,
no biases, untied classifier), trained with AdamW, fixed seeds, torch single-threaded.
Outputs under data/ground_truth/<task>/:
  model.bin      llama2.c v0 (tools/reference/llama2c_export.py v0(), vocab_size negated
                 for the untied classifier)
  tokenizer.bin  llama2.c tokenizer: int32 max_len, per token f32 score, int32 len, bytes
  test.jsonl     {"prompt", "ids" (BOS first), "target", "target_text", "evidence"}
                 (held out: no test prompt occurs in training)
  info.json      config, seed, steps, time, accuracy (reference forward on the exported
                 file), max |logit difference| between the trained model and the export
Checks: the export is loaded back with tools/reference/llama.py and its logits compared
with the trained model's on the test prompts; every test prompt's text re-encodes to its
ids with tools/reference/tokenizers.py; accuracy >= 95% or the script fails.
"""
import argparse
import json
import math
import os
import struct
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tools", "reference"))
import llama as llama_ref  # noqa: E402
import llama2c_export  # noqa: E402
from tokenizers import Llama2cTokenizer  # noqa: E402

torch.set_num_threads(1)

# ----------------------------------------------------------------------------
# vocabulary: <unk>, BOS, EOS, " ", then every symbol bare and with a leading space
# ----------------------------------------------------------------------------
KEYS = list("abcdefghijklmnop")
POINTERS = list("qrstuvwxyz")
DIGITS = list("0123456789")
PUNCT = list("*,|")
SYMBOLS = KEYS + POINTERS + DIGITS + PUNCT
PIECES = ["<unk>", "\n<s>\n", "\n</s>\n", " "] + SYMBOLS + [" " + s for s in SYMBOLS]
BOS = 1
TOK = {p: i for i, p in enumerate(PIECES)}


def sym(s):
    """Token id of symbol s as it appears in a prompt (with its leading space)."""
    return TOK[" " + s]


def write_tokenizer(path):
    # bare symbols score 0, " x" scores 1 so llama2.c's merge loop joins " " + "x".
    out = struct.pack("<i", max(len(p.encode()) for p in PIECES))
    for p in PIECES:
        b = p.encode("utf-8")
        score = 1.0 if (len(p) == 2 and p[0] == " ") else 0.0
        out += struct.pack("<fi", score, len(b)) + b
    with open(path, "wb") as f:
        f.write(out)


# ----------------------------------------------------------------------------
# tasks: a sample is (symbols list, list of (answer position, answer symbol), evidence of
# the first query as positions in [BOS] + symbols, first query end index)
# ----------------------------------------------------------------------------
def kv_sample(rng, n_queries, train=False):
    n_pairs = rng.randint(4, 7)
    keys = list(rng.choice(KEYS, n_pairs, replace=False))
    vals = [DIGITS[rng.randint(10)] for _ in keys]
    q0 = rng.randint(n_pairs)
    items = [("pair", i) for i in range(n_pairs)] + [("dist", None)] * rng.randint(2, 4)
    order = rng.permutation(len(items))
    seq, where = [], {}
    for j in order:
        kind, i = items[j]
        if kind == "pair":
            where[i] = len(seq) + 1  # +1: BOS is position 0
            seq += [keys[i], vals[i]]
        else:
            seq += ["*", keys[q0]]
    queries = [q0] + [int(rng.randint(n_pairs)) for _ in range(n_queries - 1)]
    answers, evidence, end = [], None, None
    for n, q in enumerate(queries):
        seq += ["|", keys[q]]
        if n == 0:
            evidence, end = [where[q], where[q] + 1], len(seq)
        answers.append((len(seq) + 1, vals[q]))  # position in [BOS]+seq of the answer token
        seq.append(vals[q])
    return seq, answers, evidence, end


def twohop_sample(rng, n_queries, train=False):
    n_ptr, n_keys = 2, rng.randint(3, 5)
    ptrs = list(rng.choice(POINTERS, n_ptr, replace=False))
    keys = list(rng.choice(KEYS, n_keys, replace=False))
    vals = {k: DIGITS[rng.randint(10)] for k in keys}
    target_keys = list(rng.choice(keys, n_ptr, replace=False))
    # key statements first, then pointer statements (each group shuffled): one circuit to
    # learn (the key's value is fetched at the pointer statement, then read by the query)
    stmts = [("k", k, vals[k]) for k in keys] + [("p", ptrs[i], target_keys[i]) for i in range(n_ptr)]
    order = list(rng.permutation(n_keys)) + list(n_keys + rng.permutation(n_ptr))
    seq, where = [], {}
    for j in order:
        _, a, b = stmts[j]
        where[a] = len(seq) + 1
        seq += [a, b, ","]
    # queries: pointers (two hops) and, in training only (train=True), also keys (one hop,
    # like kv): the direct lookups teach the key -> value step that the two-hop answer reuses
    answers, evidence, end = [], None, None
    for n in range(n_queries):
        direct = train and rng.rand() < 0.5
        if direct:
            q = keys[rng.randint(n_keys)]
            ans = vals[q]
        else:
            qi = rng.randint(n_ptr)
            q, k = ptrs[qi], target_keys[qi]
            ans = vals[k]
        seq += ["|", q]
        if n == 0 and not direct:
            evidence, end = sorted([where[q], where[q] + 1, where[k], where[k] + 1]), len(seq)
        answers.append((len(seq) + 1, ans))
        seq.append(ans)
    return seq, answers, evidence, end


TASKS = {"kv": kv_sample, "twohop": twohop_sample}


def to_ids(symbols):
    return [BOS] + [sym(s) for s in symbols]


def _mm_t(a, b):
    """a @ b^T through oneDNN (torch's default CPU BLAS here is the slow reference BLAS)."""
    return torch._C._nn.mkldnn_linear(a.contiguous().to_mkldnn(), b.contiguous().to_mkldnn()).to_dense()


class Linear(torch.autograd.Function):
    """y = x W^T for x [N, in], W [out, in], with oneDNN products forward and backward."""

    @staticmethod
    def forward(ctx, x, w):
        ctx.save_for_backward(x, w)
        return _mm_t(x, w)

    @staticmethod
    def backward(ctx, dy):
        x, w = ctx.saved_tensors
        return _mm_t(dy, w.t()), _mm_t(dy.t(), x.t())


def linear(x, w):
    return Linear.apply(x.reshape(-1, x.shape[-1]), w).reshape(*x.shape[:-1], w.shape[0])


# ----------------------------------------------------------------------------
# the model (same maths as tools/reference/llama.py, batched, trainable)
# ----------------------------------------------------------------------------
class Llama(torch.nn.Module):
    def __init__(self, vocab, dim, hidden, n_layers, n_heads, seq_len):
        super().__init__()
        self.cfg = dict(vocab=vocab, dim=dim, hidden=hidden, n_layers=n_layers,
                        n_heads=n_heads, seq_len=seq_len)
        P = torch.nn.Parameter
        s = dim ** -0.5
        self.emb = P(torch.randn(vocab, dim) * 0.5)
        self.layers = torch.nn.ModuleList()
        for _ in range(n_layers):
            L = torch.nn.ParameterDict(dict(
                att_norm=P(torch.ones(dim)), ffn_norm=P(torch.ones(dim)),
                wq=P(torch.randn(dim, dim) * s), wk=P(torch.randn(dim, dim) * s),
                wv=P(torch.randn(dim, dim) * s), wo=P(torch.randn(dim, dim) * s / math.sqrt(2 * n_layers)),
                w1=P(torch.randn(hidden, dim) * s), w3=P(torch.randn(hidden, dim) * s),
                w2=P(torch.randn(dim, hidden) * hidden ** -0.5 / math.sqrt(2 * n_layers))))
            self.layers.append(L)
        self.final_norm = P(torch.ones(dim))
        self.cls = P(torch.randn(vocab, dim) * s)
        cos, sin = llama_ref.rope_cos_sin(seq_len, dim // n_heads, 10000.0, torch.float32)
        self.register_buffer("cos", cos)
        self.register_buffer("sin", sin)
        self.register_buffer("causal", torch.triu(torch.full((seq_len, seq_len), float("-inf")), 1))

    @staticmethod
    def rms(x, w):
        return x * torch.rsqrt((x * x).mean(-1, keepdim=True) + 1e-5) * w

    def rope(self, x, T):  # x [B, T, H, hd], adjacent pairs
        c, s = self.cos[:T, None, :], self.sin[:T, None, :]
        a, b = x[..., 0::2], x[..., 1::2]
        return torch.stack([a * c - b * s, a * s + b * c], -1).reshape(x.shape)

    def forward(self, ids):
        B, T = ids.shape
        H = self.cfg["n_heads"]
        hd = self.cfg["dim"] // H
        x = self.emb[ids]
        for L in self.layers:
            h = self.rms(x, L["att_norm"])
            q = self.rope(linear(h, L["wq"]).view(B, T, H, hd), T).transpose(1, 2)
            k = self.rope(linear(h, L["wk"]).view(B, T, H, hd), T).transpose(1, 2)
            v = linear(h, L["wv"]).view(B, T, H, hd).transpose(1, 2)
            att = (q @ k.transpose(-1, -2)) / math.sqrt(hd) + self.causal[:T, :T]
            o = torch.softmax(att, dim=-1) @ v
            x = x + linear(o.transpose(1, 2).reshape(B, T, -1), L["wo"])
            h = self.rms(x, L["ffn_norm"])
            x = x + linear(F.silu(linear(h, L["w1"])) * linear(h, L["w3"]), L["w2"])
        return linear(self.rms(x, self.final_norm), self.cls)

    def export_v0(self):
        c = self.cfg
        hd = c["dim"] // c["n_heads"]
        g = lambda t: t.detach().numpy().astype(np.float32)  # noqa: E731
        freqs = 1.0 / (10000.0 ** (np.arange(0, hd, 2)[: hd // 2].astype(np.float32) / hd))
        ang = np.outer(np.arange(c["seq_len"], dtype=np.float32), freqs).astype(np.float32)
        m = dict(dim=c["dim"], hidden=c["hidden"], n_layers=c["n_layers"], heads=c["n_heads"],
                 kv_heads=c["n_heads"], vocab=c["vocab"], seq_len=c["seq_len"], shared=False,
                 emb=g(self.emb), final_norm=g(self.final_norm), cls=g(self.cls),
                 freqs_cos=np.cos(ang).astype(np.float32), freqs_sin=np.sin(ang).astype(np.float32),
                 layers=[{k: g(v) for k, v in L.items()} for L in self.layers])
        return llama2c_export.v0(m)


# ----------------------------------------------------------------------------
# data, training, checks
# ----------------------------------------------------------------------------
def make_test(task, n, seed):
    rng = np.random.RandomState(seed)
    out, seen = [], set()
    while len(out) < n:
        seq, answers, evidence, end = TASKS[task](rng, 1)
        ids = to_ids(seq[:end])
        if tuple(ids) in seen:
            continue
        seen.add(tuple(ids))
        out.append(dict(prompt=" ".join(seq[:end]), ids=ids, target=sym(answers[0][1]),
                        target_text=" " + answers[0][1], evidence=evidence))
    return out, seen


def repeat_sample(rng):
    """Auxiliary induction data: random symbols, then the same symbols again; every token of
    the repeat after its first is a target. It makes the previous-token + copy circuit (which
    both tasks need) form in a few hundred steps instead of after a long plateau."""
    n = rng.randint(6, 13)
    first = [SYMBOLS[i] for i in rng.randint(len(SYMBOLS), size=n)]
    seq = first + ["|"] + first
    return seq, [(n + 2 + i, first[i]) for i in range(1, n)]


def batch(task, rng, size, held_out, max_queries, aux):
    seqs, targets = [], []
    while len(seqs) < size * aux:
        seq, answers = repeat_sample(rng)
        seqs.append(to_ids(seq))
        targets.append(answers)
    while len(seqs) < size:
        seq, answers, _, end = TASKS[task](rng, rng.randint(1, max_queries + 1), train=True)
        if end is not None and tuple(to_ids(seq[:end])) in held_out:
            continue  # the first query's prompt is a test prompt
        seqs.append(to_ids(seq))
        targets.append(answers)
    T = max(len(s) for s in seqs) - 1
    x = torch.zeros(size, T, dtype=torch.long)
    y = torch.full((size, T), -100, dtype=torch.long)
    for b, (s, ans) in enumerate(zip(seqs, targets)):
        x[b, :len(s) - 1] = torch.tensor(s[:-1])
        for pos, a in ans:  # logits at pos-1 predict the token at pos
            y[b, pos - 1] = sym(a)
    return x, y


def accuracy(model, records):
    """Top-1 accuracy, one batched forward (right padding cannot change causal logits)."""
    T = max(len(r["ids"]) for r in records)
    x = torch.zeros(len(records), T, dtype=torch.long)
    for b, r in enumerate(records):
        x[b, :len(r["ids"])] = torch.tensor(r["ids"])
    with torch.no_grad():
        logits = model(x)
    last = torch.tensor([len(r["ids"]) - 1 for r in records])
    pred = logits[torch.arange(len(records)), last].argmax(-1)
    return float((pred == torch.tensor([r["target"] for r in records])).float().mean())


def train(task, args):
    torch.manual_seed(args.seed)
    rng = np.random.RandomState(args.seed)
    test, held_out = make_test(task, args.n_test, args.seed + 1)
    model = Llama(len(PIECES), args.dim, args.hidden, args.layers[task], args.heads, args.seq_len)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01, betas=(0.9, 0.98))
    t0, step, log = time.time(), 0, []
    last = min(args.steps, args.stop_at or args.steps)
    while step < last and time.time() - t0 < args.max_seconds:
        lr = args.lr * min(1.0, (step + 1) / 100) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * step / args.steps)))
        for gr in opt.param_groups:
            gr["lr"] = lr
        x, y = batch(task, rng, args.batch, held_out, args.max_queries, args.aux)
        loss = F.cross_entropy(model(x).reshape(-1, len(PIECES)), y.reshape(-1), ignore_index=-100)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        if step % args.eval_every == 0 or step == last:
            acc = accuracy(model, test[:200])
            log.append((step, round(time.time() - t0, 1), round(float(loss), 4), acc))
            print("%s step %d  %.0fs  loss %.4f  acc(200) %.3f" % ((task,) + log[-1]), flush=True)
            if acc >= args.stop_acc:
                break
    return model, test, step, time.time() - t0, log


def check_and_write(task, model, test, steps, seconds, log, args):
    out = os.path.join(ROOT, "data", "ground_truth", task + args.out_suffix)
    os.makedirs(out, exist_ok=True)
    mpath, tpath = os.path.join(out, "model.bin"), os.path.join(out, "tokenizer.bin")
    with open(mpath, "wb") as f:
        f.write(model.export_v0())
    write_tokenizer(tpath)
    ref = llama_ref.load_llama2c(mpath)
    tok = Llama2cTokenizer(tpath)
    hits, maxdiff = 0, 0.0
    with torch.no_grad():
        for r in test:
            assert tok.encode(r["prompt"], bos=True) == r["ids"], r
            lr = llama_ref.forward(ref, r["ids"])
            lt = model(torch.tensor([r["ids"]]))[0]
            maxdiff = max(maxdiff, float((lr - lt).abs().max()))
            hits += int(torch.argmax(lr[-1])) == r["target"]
    acc = hits / len(test)
    with open(os.path.join(out, "test.jsonl"), "w") as f:
        for r in test:
            f.write(json.dumps(r) + "\n")
    info = dict(task=task, config=model.cfg, kv_heads=model.cfg["n_heads"], seed=args.seed,
                steps=steps, batch=args.batch, lr=args.lr, aux=args.aux, max_queries=args.max_queries,
                train_seconds=round(seconds, 1),
                n_test=len(test), test_accuracy=acc, export_max_abs_logit_diff=maxdiff,
                model_bytes=os.path.getsize(mpath), log=log)
    with open(os.path.join(out, "info.json"), "w") as f:
        json.dump(info, f, indent=1)
    print("%s: accuracy %.4f on %d held-out prompts (reference forward on %s, %d bytes); "
          "export max |dlogit| %.2e" % (task, acc, len(test), mpath, info["model_bytes"], maxdiff))
    if maxdiff > 1e-3:
        raise SystemExit("export mismatch: %g" % maxdiff)
    if acc < 0.95:
        raise SystemExit("accuracy %.4f < 0.95" % acc)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--task", default="all", choices=list(TASKS) + ["all"])
    ap.add_argument("--seed", type=int, default=15)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--seq-len", type=int, default=64)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--steps", type=int, default=4000)
    ap.add_argument("--max-seconds", type=float, default=540,
                    help="wall-clock cap (the brief: < 10 min per model); info.json records the steps run")
    ap.add_argument("--stop-at", type=int, default=0,
                    help="stop after this many steps (the schedule still spans --steps): "
                         "reproduces a run that the wall-clock cap ended")
    ap.add_argument("--stop-acc", type=float, default=0.995, help="stop early at this accuracy on 200 test prompts")
    ap.add_argument("--eval-every", type=int, default=50)
    ap.add_argument("--max-queries", type=int, default=6, help="queries per training sequence: 1..this")
    ap.add_argument("--aux", type=float, default=0.5, help="fraction of each batch that is induction (repeat) data")
    ap.add_argument("--layers-kv", type=int, default=2)
    ap.add_argument("--layers-twohop", type=int, default=3)
    ap.add_argument("--out-suffix", default="", help="write to data/ground_truth/<task><suffix> (experiments)")
    ap.add_argument("--n-test", type=int, default=500)
    args = ap.parse_args()
    args.layers = {"kv": args.layers_kv, "twohop": args.layers_twohop}
    for task in (TASKS if args.task == "all" else [args.task]):
        model, test, steps, seconds, log = train(task, args)
        check_and_write(task, model, test, steps, seconds, log, args)


if __name__ == "__main__":
    main()
