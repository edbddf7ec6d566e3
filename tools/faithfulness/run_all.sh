#!/bin/sh
# Regenerates the measured part of docs/faithfulness.md: every protocol of `depass evaluate`
# on stories260K, TinyStories-656K and the two ground-truth models, every method that
# applies, then tools/faithfulness/report.py writes the tables and copies the curves.
#
#   make build && tools/faithfulness/run_all.sh            # from the repository root
#
# Environment: DEPASS (default build/bin/depass), MODELS (default models, as `make models`
# makes it), RUNS (default build/faithfulness: each run's directory; an interrupted run
# continues where it stopped, since every run uses --resume), THREADS (default 2).
set -eu
DEPASS=${DEPASS:-build/bin/depass}
MODELS=${MODELS:-models}
RUNS=${RUNS:-build/faithfulness}
THREADS=${THREADS:-2}
mkdir -p "$RUNS"

run() {
  name=$1
  shift
  echo "== $name" >&2
  "$DEPASS" evaluate "$@" --threads "$THREADS" --out "$RUNS/$name" --resume >/dev/null
}

S=$MODELS/stories260K/stories260K.bin
T=$MODELS/tinystories-656k
for protocol in disrupt; do
  run stories260K-$protocol --model "$S" --data data/faithfulness/stories260K.jsonl --protocol $protocol --limit 200
  run tinystories656k-$protocol --model "$T" --data data/faithfulness/tinystories656k.jsonl --protocol $protocol --limit 200
  for task in kv twohop; do
    run $task-$protocol --model data/ground_truth/$task/model.bin --tokenizer data/ground_truth/$task/tokenizer.bin \
      --data data/ground_truth/$task/test.jsonl --protocol $protocol --limit 200
  done
done
# The paper's protocol (--keep-last: the last token is never removed nor ranked).
run stories260K-disrupt-keep-last --model "$S" --data data/faithfulness/stories260K.jsonl --protocol disrupt --limit 200 --keep-last
run tinystories656k-disrupt-keep-last --model "$T" --data data/faithfulness/tinystories656k.jsonl --protocol disrupt --limit 200 --keep-last
for task in kv twohop; do
  run $task-disrupt-keep-last --model data/ground_truth/$task/model.bin --tokenizer data/ground_truth/$task/tokenizer.bin \
    --data data/ground_truth/$task/test.jsonl --protocol disrupt --limit 200 --keep-last
done
for protocol in mask-heads mask-neurons; do
  run stories260K-$protocol --model "$S" --data data/faithfulness/stories260K.jsonl --protocol $protocol --limit 100
  run tinystories656k-$protocol --model "$T" --data data/faithfulness/tinystories656k.jsonl --protocol $protocol --limit 100
done
run stories260K-subspace --model "$S" --data data/faithfulness/stories260K_pronoun.jsonl --protocol subspace
run tinystories656k-subspace --model "$T" --data data/faithfulness/tinystories656k_pronoun.jsonl --protocol subspace

/usr/bin/python3 tools/faithfulness/report.py "$RUNS" --write docs/faithfulness.md
