#!/usr/bin/env python3
"""Overhead of the Python module against the C++ CLI on the same job: a 22-token
token-level attribution of stories260K (float64; load, tokenize, decompose, read the
scores of the predicted token). A measurement, not a test (docs: README "Python").

    PYTHONPATH=build/python OMP_NUM_THREADS=1 OMP_WAIT_POLICY=passive \
        /usr/bin/python3 python/benchmarks/overhead.py build/bin/depass models/stories260K/stories260K.bin

Prints medians over --repeats runs of
  cli process        `depass tokens ... --format npy` as a whole process
  python process     `python3 -c "import depass; ..."` doing the same, as a whole process
  cli per item       one more attribution in a `depass tokens --batch` run (the model loaded
                     once): (time of --items lines - time of 1 line) / (items - 1)
  python per item    model.decompose + logits + component_logits inside one process
"""

import argparse
import os
import statistics
import subprocess
import sys
import time

PROMPT = "Once upon a time there was a little girl named Lily. She loved to play with her"

SCRIPT = f"""
import sys, depass
model = depass.load(sys.argv[1])
ids = model.tokenize({PROMPT!r})
result = model.decompose(ids)
last = len(ids) - 1
target = int(result.logits(last).argmax())
scores = result.component_logits(last, target)
"""


def median_seconds(command, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("cli")
    parser.add_argument("model")
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--items", type=int, default=100, help="lines of the --batch run")
    args = parser.parse_args()
    out = "/tmp/depass_overhead_scores.npy"
    cli = median_seconds([args.cli, "tokens", "--model", args.model, "--prompt", PROMPT, "--threads", "1",
                          "--format", "npy", "--output", out, "--quiet"], args.repeats)
    py = median_seconds([sys.executable, "-c", SCRIPT, args.model], args.repeats)
    empty = median_seconds([sys.executable, "-c", "import numpy, depass"], args.repeats)

    items = args.items
    batch1, batchN = "/tmp/depass_overhead_1.jsonl", "/tmp/depass_overhead_n.jsonl"
    line = '{"prompt": "%s"}\n' % PROMPT
    open(batch1, "w").write(line)
    open(batchN, "w").write(line * items)
    batch = [args.cli, "tokens", "--model", args.model, "--threads", "1", "--quiet", "--batch"]
    one = median_seconds(batch + [batch1], args.repeats)
    many = median_seconds(batch + [batchN], max(3, args.repeats // 5))
    cli_item = (many - one) / (items - 1)

    import depass
    depass.set_threads(1)
    model = depass.load(args.model)
    ids = model.tokenize(PROMPT)
    calls = []
    for _ in range(args.repeats * 10):
        start = time.perf_counter()
        result = model.decompose(ids)
        result.component_logits(len(ids) - 1, int(result.logits(len(ids) - 1).argmax()))
        calls.append(time.perf_counter() - start)
    inproc = statistics.median(calls)
    print(f"tokens: {len(ids)}, threads: 1, repeats: {args.repeats}")
    print(f"cli process       {cli * 1e3:8.2f} ms")
    print(f"python process    {py * 1e3:8.2f} ms  ({(py / cli - 1) * 100:+.0f}% vs cli; "
          f"interpreter + import numpy, depass alone: {empty * 1e3:.2f} ms)")
    print(f"python, less start-up {(py - empty) * 1e3:8.2f} ms  ({((py - empty) / cli - 1) * 100:+.0f}% vs cli)")
    print(f"cli per item      {cli_item * 1e3:8.2f} ms  (--batch of {items} lines: {many * 1e3:.1f} ms, of 1: {one * 1e3:.1f} ms)")
    print(f"python per item   {inproc * 1e3:8.2f} ms  ({(inproc / cli_item - 1) * 100:+.0f}% vs cli per item)")


if __name__ == "__main__":
    main()
