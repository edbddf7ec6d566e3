#!/bin/sh
# The subspace-protocol investigation of docs/faithfulness.md ("What the results say",
# subspace): DePass under each MLP split rule, temperature and sink setting at the default
# probe site, and every method at a second site (before layer 1's MLP), on stories260K and
# TinyStories-656K; then one line per run and method (areas, top-1 evidence).
#
#   make build && tools/faithfulness/subspace_variants.sh      # from the repository root
#
# Environment: DEPASS, MODELS, THREADS as for run_all.sh; RUNS (default build/subspace).
set -eu
DEPASS=${DEPASS:-build/bin/depass}
MODELS=${MODELS:-models}
RUNS=${RUNS:-build/subspace}
THREADS=${THREADS:-2}
mkdir -p "$RUNS"

run() {
  name=$1
  shift
  echo "== $name" >&2
  "$DEPASS" evaluate "$@" --protocol subspace --threads "$THREADS" --no-progress --out "$RUNS/$name" --resume >/dev/null
}

for model in stories260K tinystories656k; do
  if [ $model = stories260K ]; then
    path=$MODELS/stories260K/stories260K.bin
  else
    path=$MODELS/tinystories-656k
  fi
  data=data/faithfulness/${model}_pronoun.jsonl
  run $model-all --model "$path" --data "$data"
  run $model-all-mlp1 --model "$path" --data "$data" --probe-layer 1 --probe-site mlp
  run $model-path-mlp1 --model "$path" --data "$data" --probe-layer 1 --probe-site mlp --methods depass --mlp-split path
  for variant in proportional:--mlp-split,proportional argmax:--mlp-split,argmax path:--mlp-split,path \
                 nosink:--no-bos-sink t003:--temperature,0.03 t1:--temperature,1 pathnosink:--mlp-split,path,--no-bos-sink; do
    flags=$(echo "${variant#*:}" | tr ',' ' ')
    # shellcheck disable=SC2086 # the flags are words on purpose
    run $model-${variant%%:*} --model "$path" --data "$data" --methods depass $flags
  done
done

/usr/bin/python3 - "$RUNS" <<'PY'
import json, os, sys
runs = sys.argv[1]
print("| run | method | probe at | disrupt area (higher better) | recover area (lower better) | top-1 evidence |")
print("|---|---|---|---|---|---|")
for name in sorted(os.listdir(runs)):
    with open(os.path.join(runs, name, "results.json")) as f:
        d = json.load(f)
    for m in d["results"]:
        c, e = m["curves"], m["evidence_top1"]
        print("| %s | %s | %s | %.2f | %.2f | %.1f%% (%d/%d) |" % (
            name, m["method"], d["probe"]["boundary"], c["disrupt"]["area"], c["recover"]["area"],
            100.0 * e["accuracy"], e["hits"], e["counted"]))
PY
