#!/usr/bin/python3
"""Before/after timing of two revisions of the engine, each with its own harness.

compare.py --engine-ref lays today's benchmarks/ over an old revision, which fails when the
harness uses an API the old revision does not have. This script builds each revision's own
bench_depass_bench (git archive + CMake Release, `-march=native` as in compare.py), then runs
them alternately (round 1: old, new; round 2: old, new; ...) on the same token ids of the
Llama-shaped model, so that a drift of the machine hits both sides alike, and prints a
Markdown table of the fastest `Decomposer::run` per revision and size.

    /usr/bin/python3 benchmarks/before_after.py OLD_REV NEW_REV [--sizes 256,512]
        [--rounds 2] [--threads 2] [--realtime]
"""
import argparse
import json
import os
import subprocess
import sys
import tarfile
import io

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "benchmarks"))
import compare  # noqa: E402  (write_ids: the same ids as compare.py)


def build(rev, work):
    """The revision's tree and its own harness; returns the harness path."""
    sha = subprocess.run(["git", "-C", REPO, "rev-parse", "--short=12", rev], check=True, capture_output=True,
                         text=True).stdout.strip()
    src, bld = os.path.join(work, "src-" + sha), os.path.join(work, "build-" + sha)
    if not os.path.isdir(src):
        blob = subprocess.run(["git", "-C", REPO, "archive", sha], check=True, capture_output=True).stdout
        tarfile.open(fileobj=io.BytesIO(blob)).extractall(src)
    for cmd in (["cmake", "-S", src, "-B", bld, "-DCMAKE_BUILD_TYPE=Release"],
                ["cmake", "--build", bld, "--target", "bench_depass_bench", "-j2"]):
        subprocess.run(cmd, check=True, capture_output=True)
    return sha, os.path.join(bld, "bin", "bench_depass_bench")


def run(harness, n, threads, repeats, ids, realtime):
    env = dict(os.environ, OMP_WAIT_POLICY="passive")
    env.pop("OMP_NUM_THREADS", None)
    cmd = ([harness, "--model", "llama-random", "--n", str(n), "--threads", str(threads), "--repeats", str(repeats),
            "--ids", ids])
    if realtime:
        cmd = ["chrt", "-r", "1"] + cmd
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout
    for line in out.splitlines():
        if '"depass_s"' in line:
            d = json.loads(line)
            return d["depass_s"]["samples"], d.get("rss_kib", {}).get("peak")
    raise RuntimeError("no depass_s in the output of %s" % " ".join(cmd))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("old")
    ap.add_argument("new")
    ap.add_argument("--sizes", default="256,512")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--realtime", action="store_true", help="chrt -r 1 (needs root)")
    ap.add_argument("--work", default=os.path.join(REPO, "build-before-after"))
    args = ap.parse_args()
    os.makedirs(args.work, exist_ok=True)
    sizes = [int(s) for s in args.sizes.split(",")]
    ids = os.path.join(args.work, "llama-random.ids")
    compare.write_ids(ids, max(sizes), 4096)
    revs = [build(r, args.work) for r in (args.old, args.new)]
    samples = {(sha, n): [] for sha, _ in revs for n in sizes}
    peaks = {}
    for round_ in range(args.rounds):
        for n in sizes:
            for sha, harness in revs:
                s, peak = run(harness, n, args.threads, 3 if n <= 256 else 1, ids, args.realtime)
                samples[(sha, n)] += s
                peaks[(sha, n)] = max(peaks.get((sha, n)) or 0, peak or 0)
                print("round %d %s N=%d: %s" % (round_ + 1, sha, n, " ".join("%.2f" % x for x in s)), file=sys.stderr)
    (old, _), (new, _) = revs
    print("| N | %s s (fastest, samples) | %s s (fastest, samples) | new / old | peak MiB old / new |" % (old, new))
    print("|---|---|---|---|---|")
    for n in sizes:
        a, b = samples[(old, n)], samples[(new, n)]
        print("| %d | %.2f (%d) | %.2f (%d) | %.3f | %.0f / %.0f |" % (
            n, min(a), len(a), min(b), len(b), min(b) / min(a), peaks[(old, n)] / 1024, peaks[(new, n)] / 1024))


if __name__ == "__main__":
    main()
