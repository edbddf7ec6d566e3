#!/bin/sh
# Regenerates the split-rule table of docs/faithfulness.md (issue #16): DePass with every
# MLP split rule (and the sink on and off) on the disrupt protocol of each model, judged
# against the best baseline of tools/faithfulness/run_all.sh's runs on the same records
# (paired bootstrap), then tools/faithfulness/split_report.py writes the table.
#
#   make build && tools/faithfulness/run_all.sh && tools/faithfulness/split_rules.sh
#
# Environment: DEPASS, MODELS, RUNS, THREADS as for run_all.sh (RUNS must hold its
# *-disrupt and *-disrupt-keep-last runs: the baselines); VARIANTS (default: every rule, sink on, plus softmax and
# path with the sink off and with the attention's sinks, --sink-ratio 4, and softmax at temperatures 0.03 and 1
# around the default 0.1), each NAME:FLAGS with commas for spaces.
set -eu
DEPASS=${DEPASS:-build/bin/depass}
MODELS=${MODELS:-models}
RUNS=${RUNS:-build/faithfulness}
THREADS=${THREADS:-2}
VARIANTS=${VARIANTS:-"softmax:--mlp-split,softmax proportional:--mlp-split,proportional argmax:--mlp-split,argmax path:--mlp-split,path softmax-nosink:--mlp-split,softmax,--no-bos-sink path-nosink:--mlp-split,path,--no-bos-sink softmax-sinks4:--mlp-split,softmax,--sink-ratio,4 path-sinks4:--mlp-split,path,--sink-ratio,4 softmax-t003:--mlp-split,softmax,--temperature,0.03 softmax-t1:--mlp-split,softmax,--temperature,1"}
mkdir -p "$RUNS"

run() {
  name=$1
  shift
  echo "== $name" >&2
  "$DEPASS" evaluate "$@" --protocol disrupt --methods depass --limit 200 --threads "$THREADS" \
    --out "$RUNS/$name" --resume >/dev/null
}

S=$MODELS/stories260K/stories260K.bin
T=$MODELS/tinystories-656k
# Both protocols: issue #15's rules, and the paper's (--keep-last).
for suffix in "" -keep-last; do
  for variant in $VARIANTS; do
    rule=${variant%%:*}
    flags=$(echo "${variant#*:}" | tr ',' ' ')${suffix:+ --keep-last}
    # shellcheck disable=SC2086 # the flags are words on purpose
    run split-$rule-stories260K$suffix --model "$S" --data data/faithfulness/stories260K.jsonl $flags
    # shellcheck disable=SC2086
    run split-$rule-tinystories656k$suffix --model "$T" --data data/faithfulness/tinystories656k.jsonl $flags
    for task in kv twohop; do
      # shellcheck disable=SC2086
      run split-$rule-$task$suffix --model data/ground_truth/$task/model.bin --tokenizer data/ground_truth/$task/tokenizer.bin \
        --data data/ground_truth/$task/test.jsonl $flags
    done
  done
done

# Cost: `depass tokens` (DePass alone) over the first 100 TinyStories-656K records, one
# thread, best of three runs, per variant: RUNS/split-cost.tsv.
ids=$RUNS/split-cost-ids.jsonl
/usr/bin/python3 -c 'import json, sys
for line in list(open(sys.argv[1]))[:100]: print(json.dumps({"ids": json.loads(line)["ids"]}))' \
  data/faithfulness/tinystories656k.jsonl > "$ids"
: > "$RUNS/split-cost.tsv"
for variant in $VARIANTS; do
  rule=${variant%%:*}
  flags=$(echo "${variant#*:}" | tr ',' ' ')
  best=
  for _ in 1 2 3; do
    start=$(date +%s.%N)
    # shellcheck disable=SC2086
    "$DEPASS" tokens --model "$T" --batch "$ids" $flags --threads 1 >/dev/null
    t=$(echo "$(date +%s.%N) - $start" | bc)
    if [ -z "$best" ] || [ "$(echo "$t < $best" | bc)" = 1 ]; then best=$t; fi
  done
  printf '%s\t%s\n' "$rule" "$best" >> "$RUNS/split-cost.tsv"
done

/usr/bin/python3 tools/faithfulness/split_report.py "$RUNS" --variants "$VARIANTS" --write docs/faithfulness.md
