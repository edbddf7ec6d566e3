#!/usr/bin/env bash
# Mutation testing: applies each mutation of tools/mutations.txt, one at a time, to a copy
# of this working tree, rebuilds only the test sources it names (each test source of the
# copy is also built as an executable of its own, so a mutation recompiles one file, not a
# whole test area), runs them, and prints a table: mutation | file | caught/survived | by
# which test | time.
#
#   tools/mutate.sh [-l LIST] [-k] [-j JOBS] [-x SUBSTRING] [NAME_SUBSTRING ...]
#
#   -l LIST   mutation list (default tools/mutations.txt; format described at its top)
#   -k        keep the scratch copy (default: removed at the end)
#   -j JOBS   build parallelism (default 2)
#   -x TEXT   leave out the mutations whose name contains TEXT (repeatable)
#   NAME...   only the mutations whose name contains one of these substrings
#
# Environment: MUTATE_DIR (scratch directory, default a new one under /tmp),
# MUTATE_CXX_FLAGS (default "-O0 -DNDEBUG": quickest to compile; the tests named in the
# list are small enough to run unoptimised),
# DEPASS_MODEL_DIR (default: models/ or ../shared/models next to the tree).
# Not part of CI (it rebuilds once per mutation). Exit status 0 only when every mutation
# was applied and caught; a mutation whose snippet is not in its file exactly once is
# reported as "snippet not found" / "snippet not unique" and fails the run.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
LIST="$ROOT/tools/mutations.txt"
KEEP=0
JOBS=2
EXCLUDES=()
while getopts "l:kj:x:h" opt; do
  case "$opt" in
    l) LIST="$(cd "$(dirname "$OPTARG")" && pwd)/$(basename "$OPTARG")" ;;
    k) KEEP=1 ;;
    j) JOBS="$OPTARG" ;;
    x) EXCLUDES+=("$OPTARG") ;;
    h) sed -n '2,23p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) exit 2 ;;
  esac
done
shift $((OPTIND - 1))
FILTERS=("$@")

PY="$(command -v python3)"
WORK="${MUTATE_DIR:-$(mktemp -d /tmp/depass-mutate.XXXXXX)}"
SRC="$WORK/src"
BUILD="$WORK/build"
LOGS="$WORK/logs"
mkdir -p "$SRC" "$LOGS"
cleanup() { if [[ "$KEEP" == 0 && -z "${MUTATE_DIR:-}" ]]; then rm -rf "$WORK"; fi; }
trap cleanup EXIT

if [[ -z "${DEPASS_MODEL_DIR:-}" ]]; then
  for d in "$ROOT/models" "$ROOT/../shared/models"; do
    if [[ -f "$d/stories260K/stories260K.bin" ]]; then DEPASS_MODEL_DIR="$(cd "$d" && pwd)"; break; fi
  done
fi
export DEPASS_MODEL_DIR="${DEPASS_MODEL_DIR:-$ROOT/models}"
export DEPASS_REQUIRE_MODELS=1 OMP_NUM_THREADS=1 OMP_WAIT_POLICY=passive

# --- the mutation list: parsed once into one record per mutation ------------------------
# mutate_tool parse LIST -> lines "index<TAB>name<TAB>file<TAB>sources<TAB>tests"
# mutate_tool check|apply|restore LIST INDEX ROOT -> checks / applies / undoes one mutation
mutate_tool() {
  "$PY" - "$@" <<'PYEOF'
import os, sys

def parse(path):
    blocks, cur, mode, lines = [], None, None, open(path, encoding="utf-8").read().split("\n")
    for no, line in enumerate(lines, 1):
        if mode in ("orig", "repl"):
            if line == "====" and mode == "orig":
                mode = "repl"
            elif line == ">>>>" and mode == "repl":
                mode = None
                blocks.append(cur)
                cur = None
            else:
                cur[mode].append(line)
            continue
        if line.startswith("@@ "):
            key, _, value = line[3:].partition(":")
            if key.strip() == "name":
                cur = {"name": value.strip(), "orig": [], "repl": [], "line": no}
            cur[key.strip()] = value.strip()
        elif line == "<<<<":
            mode = "orig"
    if mode is not None or cur is not None:
        sys.exit("%s: unterminated mutation block near '%s'" % (path, (cur or {}).get("name")))
    for b in blocks:
        b.setdefault("tests", "")
        for k in ("file", "sources"):
            if not b.get(k):
                sys.exit("%s:%d: mutation '%s' has no '@@ %s:' line" % (path, b["line"], b["name"], k))
    return blocks

def texts(b):
    return "\n".join(b["orig"]) + "\n", ("\n".join(b["repl"]) + "\n") if b["repl"] else ""

cmd, path = sys.argv[1], sys.argv[2]
blocks = parse(path)
if cmd == "parse":
    for i, b in enumerate(blocks):
        print("\t".join([str(i), b["name"], b["file"], b["sources"], b["tests"] or "*"]))
    sys.exit(0)
b = blocks[int(sys.argv[3])]
target = os.path.join(sys.argv[4], b["file"])
if cmd == "restore":
    os.replace(target + ".mutate-orig", target)
    os.utime(target, None)  # newer than the mutated objects: rebuilt when next needed
    sys.exit(0)
if not os.path.isfile(target):
    print("file not found"); sys.exit(3)
src = open(target, encoding="utf-8").read()
orig, repl = texts(b)
count = src.count(orig)
if count != 1:
    print("snippet not found" if count == 0 else "snippet not unique (%d matches)" % count); sys.exit(3)
if cmd == "apply":
    with open(target + ".mutate-orig", "w", encoding="utf-8") as f:
        f.write(src)
    with open(target, "w", encoding="utf-8") as f:
        f.write(src.replace(orig, repl))
print("ok")
PYEOF
}

mapfile -t RECORDS < <(mutate_tool parse "$LIST")
SELECTED=()
for rec in "${RECORDS[@]}"; do
  IFS=$'\t' read -r idx name file sources tests <<<"$rec"
  if ((${#FILTERS[@]})); then
    keep=0
    for f in "${FILTERS[@]}"; do [[ "$name" == *"$f"* ]] && keep=1; done
    ((keep)) || continue
  fi
  skip=0
  for x in "${EXCLUDES[@]}"; do [[ "$name" == *"$x"* ]] && skip=1; done
  ((skip)) && continue
  SELECTED+=("$rec")
done
((${#SELECTED[@]})) || { echo "mutate: no mutation selected from $LIST"; exit 2; }

# --- a copy of the working tree, configured once --------------------------------------------
# Only files whose content differs are (re)written, so that a scratch tree kept from an
# earlier run rebuilds exactly what changed (a restored file keeps its newer time).
echo "mutate: copying $ROOT to $SRC"
"$PY" - "$ROOT" "$SRC" <<'PYEOF'
import os, shutil, sys
root, dst = sys.argv[1], sys.argv[2]
for d, dirs, files in os.walk(root):
    rel = os.path.relpath(d, root)
    if rel == ".":
        dirs[:] = [x for x in dirs if x not in (".git", "models") and not x.startswith("build")]
    os.makedirs(os.path.join(dst, rel), exist_ok=True)
    for f in files:
        a, b = os.path.join(d, f), os.path.join(dst, rel, f)
        if os.path.islink(a):
            continue
        if not os.path.exists(b) or open(a, "rb").read() != open(b, "rb").read():
            shutil.copyfile(a, b)
            shutil.copymode(a, b)
PYEOF
# One executable per test source (target mut_<area>_<Name>, in $BUILD/mut), next to the
# area executables: a mutation then recompiles only the sources that can catch it.
cp "$ROOT/tests/CMakeLists.txt" "$SRC/tests/CMakeLists.txt.new"
cat >>"$SRC/tests/CMakeLists.txt.new" <<'CMAKEEOF'

# --- added by tools/mutate.sh (scratch copy only) ---
foreach(_src IN LISTS _depass_test_sources)
  string(REGEX REPLACE "\\.test\\.cpp$" "" _name "${_src}")
  string(REGEX REPLACE "[^A-Za-z0-9]" "_" _name "mut_${_name}")
  add_executable(${_name} EXCLUDE_FROM_ALL "${CMAKE_CURRENT_SOURCE_DIR}/${_src}")
  target_link_libraries(${_name} PRIVATE depass_catch_main depass_test_support)
  depass_program_defaults(${_name})
  set_target_properties(${_name} PROPERTIES RUNTIME_OUTPUT_DIRECTORY "${CMAKE_BINARY_DIR}/mut")
  if(_src MATCHES "^cli/" AND DEPASS_BUILD_EXAMPLES)  # depass_cli is defined later (examples/)
    target_compile_definitions(${_name} PRIVATE DEPASS_CLI_PATH="${CMAKE_BINARY_DIR}/bin/depass"
                                                DEPASS_BIN_DIR="${CMAKE_BINARY_DIR}/bin")
    add_dependencies(${_name} depass_cli)
  endif()
endforeach()
CMAKEEOF
if ! cmp -s "$SRC/tests/CMakeLists.txt.new" "$SRC/tests/CMakeLists.txt"; then
  mv "$SRC/tests/CMakeLists.txt.new" "$SRC/tests/CMakeLists.txt"
else
  rm "$SRC/tests/CMakeLists.txt.new"
fi
echo "mutate: configuring $BUILD (CXX flags: ${MUTATE_CXX_FLAGS:--O0 -DNDEBUG})"
cmake -S "$SRC" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release "-DCMAKE_CXX_FLAGS_RELEASE=${MUTATE_CXX_FLAGS:--O0 -DNDEBUG}" \
  -DDEPASS_BUILD_BENCHMARKS=OFF -DDEPASS_INSTALL=OFF >"$LOGS/configure.log" 2>&1 ||
  { tail -30 "$LOGS/configure.log"; exit 1; }

target_of() {  # test source (relative to tests/) -> target name
  local n="${1%.test.cpp}"
  echo "mut_${n//[^A-Za-z0-9]/_}"
}

run_tests() {  # $1 = sources, $2 = Catch2 test spec, $3 = log prefix; prints failed test cases
  local src exe code
  for src in $1; do
    exe="$BUILD/mut/$(target_of "$src")"
    code=0
    (cd "$BUILD" && "$exe" "$2" -r junit -o "$3.$(target_of "$src").xml" >"$3.$(target_of "$src").log" 2>&1) || code=$?
    # 77: a test case skipped (missing model or program): it proved nothing.
    [[ "$code" == 77 ]] && echo "${src%%/*}: (a test case skipped; see $3.$(target_of "$src").log)"
    "$PY" - "$3.$(target_of "$src").xml" "${src%%/*}" <<'PYEOF'
import sys, xml.etree.ElementTree as ET
try:
    root = ET.parse(sys.argv[1]).getroot()
except Exception as e:  # no report: the executable crashed
    print("%s: (no test report: crashed?)" % sys.argv[2]); sys.exit(0)
ran = 0
for tc in root.iter("testcase"):
    ran += 1
    if tc.find("failure") is not None or tc.find("error") is not None:
        name = tc.get("name")
        cls = tc.get("classname", "")
        print("%s:%s" % (sys.argv[2], name if name != "root" else cls.split(".", 1)[-1]))
if ran == 0:
    print("%s: (no test case ran)" % sys.argv[2])
PYEOF
  done | sort -u
}

# --- baseline: the unmutated tree must build and pass the selected tests ---------------------
ALL_SOURCES=$(for rec in "${SELECTED[@]}"; do cut -f4 <<<"$rec"; done | tr ' ' '\n' | sort -u | tr '\n' ' ')
ALL_TARGETS=$(for src in $ALL_SOURCES; do target_of "$src"; done | tr '\n' ' ')
echo "mutate: baseline build of $ALL_TARGETS"
start=$SECONDS
# shellcheck disable=SC2086
cmake --build "$BUILD" -j"$JOBS" --target $ALL_TARGETS >"$LOGS/baseline.build.log" 2>&1 ||
  { tail -30 "$LOGS/baseline.build.log"; echo "mutate: the unmutated tree does not build"; exit 1; }
for rec in "${SELECTED[@]}"; do
  IFS=$'\t' read -r idx name file sources tests <<<"$rec"
  failed=$(run_tests "$sources" "$tests" "$LOGS/baseline.m$idx")
  if [[ -n "$failed" ]]; then
    echo "mutate: the unmutated tree fails the tests of '$name' (logs in $LOGS):"; echo "$failed"; exit 1
  fi
done
echo "mutate: baseline built and passed in $((SECONDS - start)) s"

# --- one mutation at a time ---------------------------------------------------------------
TABLE="$WORK/mutations.md"
{
  echo "| mutation | file | result | caught by | time |"
  echo "|---|---|---|---|---|"
} >"$TABLE"
bad=0
total_start=$SECONDS
for rec in "${SELECTED[@]}"; do
  IFS=$'\t' read -r idx name file sources tests <<<"$rec"
  start=$SECONDS
  slug="m$idx"
  status=$(mutate_tool apply "$LIST" "$idx" "$SRC" || true)
  if [[ "$status" != ok ]]; then
    result="$status"; by="-"; bad=1
  else
    targets=$(for src in $sources; do target_of "$src"; done | tr '\n' ' ')
    # shellcheck disable=SC2086
    if ! cmake --build "$BUILD" -j"$JOBS" --target $targets >"$LOGS/$slug.build.log" 2>&1; then
      result="caught"; by="(does not compile; see logs/$slug.build.log)"
    else
      failed=$(run_tests "$sources" "$tests" "$LOGS/$slug")
      if [[ -n "$failed" ]]; then
        result="caught"
        by=$(head -3 <<<"$failed" | paste -sd';' | sed 's/;/; /g')
        n=$(wc -l <<<"$failed")
        ((n > 3)) && by="$by (+$((n - 3)) more)"
      else
        result="SURVIVED"; by="-"; bad=1
      fi
    fi
    mutate_tool restore "$LIST" "$idx" "$SRC" >/dev/null
  fi
  line="| $name | $file | $result | $by | $((SECONDS - start)) s |"
  echo "$line" >>"$TABLE"
  echo "mutate: $line"
done
echo "| total | | | | $((SECONDS - total_start)) s |" >>"$TABLE"
echo
cat "$TABLE"
[[ "$KEEP" == 1 || -n "${MUTATE_DIR:-}" ]] && echo "mutate: scratch tree kept in $WORK"
exit "$bad"
