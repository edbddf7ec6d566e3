#!/usr/bin/env python3
"""Explain a model's predictions with token-level DePass and save a heatmap.

For every position p of the prompt, the model predicts a next token t_p; DePass splits
its logit into one share per input token (and a bias share). Row p of the heatmap shows
those shares: which earlier tokens made the model predict t_p. The last row is the
prediction after the whole prompt, printed with its top contributing tokens.

    PYTHONPATH=build/python python3 python/examples/explain_heatmap.py \
        models/stories260K/stories260K.bin --output heatmap.png
"""

import argparse

import matplotlib

matplotlib.use("Agg")  # files only, no display needed
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import depass  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", nargs="?", default="models/stories260K/stories260K.bin",
                        help="checkpoint: llama2.c .bin, .gguf or a Hugging Face directory")
    parser.add_argument("--tokenizer", default=None, help="tokenizer file, if not next to/inside the model")
    parser.add_argument("--prompt", default="Once upon a time there was a little girl named Lily. "
                                            "She loved to play with her")
    parser.add_argument("--output", default="depass_heatmap.png", help="PNG file to write")
    parser.add_argument("--top", type=int, default=5, help="contributors of the last prediction to print")
    args = parser.parse_args()

    model = depass.load(args.model, tokenizer=args.tokenizer)
    ids = model.tokenize(args.prompt)
    result = model.decompose(ids, init=depass.Tokens())
    n = len(ids)

    # Row p: each input token's share of the logit of the token predicted at p.
    shares = np.full((n, n), np.nan)
    predicted = []
    for p in range(n):
        target = int(np.argmax(result.logits(p)))
        predicted.append(target)
        shares[p, : p + 1] = result.component_logits(p, target)[: p + 1]

    last, target = n - 1, predicted[-1]
    scores = result.component_logits(last, target)
    print(f"prediction after the prompt: {model.decode([target])!r}, logit {result.logit(last, target):.4f} "
          f"= sum of shares {scores.sum():.4f} (max relative residual {result.max_relative_residual():.1e})")
    for position in np.argsort(-scores[:n])[: args.top]:
        print(f"  {position:3d} {model.decode([ids[position]])!r:14} {scores[position]:+.4f}")

    def label(token):  # the token's text, newlines and other controls escaped
        return repr(model.piece(token).decode("utf-8", "replace"))[1:-1]

    labels = [label(i) for i in ids]
    size = max(6.0, 0.35 * n)
    fig, ax = plt.subplots(figsize=(size, size))
    limit = np.nanmax(np.abs(shares))
    image = ax.imshow(shares, cmap="RdBu_r", vmin=-limit, vmax=limit)
    ax.set_xticks(range(n), labels, rotation=90, fontsize=8)
    ax.set_yticks(range(n), [f"{labels[p]} -> {label(t)}" for p, t in enumerate(predicted)], fontsize=8)
    ax.set_xlabel("input token (component)")
    ax.set_ylabel("position -> predicted token")
    ax.set_title("DePass: each input token's share of the predicted logit")
    fig.colorbar(image, ax=ax, shrink=0.6, label="logit share")
    fig.tight_layout()
    fig.savefig(args.output, dpi=100)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
