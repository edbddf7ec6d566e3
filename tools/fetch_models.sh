#!/usr/bin/env bash
# Puts the demo/test models into <repo>/models/, checking every file's SHA-256 against
# tools/models.sha256. Files already present with the right hash are left alone, so
# running this again is cheap and silent.
#
# Source, in order:
#   1. $DEPASS_MODEL_MIRROR (a directory laid out like models/), if set;
#      otherwise <repo>/../shared/models if it exists;
#   2. the public origins on Hugging Face (curl), for files the mirror lacks or when there
#      is no mirror.
# Destination: $DEPASS_MODELS_DEST if set, else <repo>/models.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
manifest="$root/tools/models.sha256"
dest="${DEPASS_MODELS_DEST:-$root/models}"

die() { echo "fetch_models: error: $*" >&2; exit 1; }
note() { echo "fetch_models: $*" >&2; }

if [[ -n "${DEPASS_MODEL_MIRROR:-}" ]]; then
  [[ -d "$DEPASS_MODEL_MIRROR" ]] ||
    die "DEPASS_MODEL_MIRROR=$DEPASS_MODEL_MIRROR is not a directory"
  mirror="$(cd "$DEPASS_MODEL_MIRROR" && pwd)"
elif [[ -d "$root/../shared/models" ]]; then
  mirror="$(cd "$root/../shared/models" && pwd)"
else
  mirror=""
fi

if command -v sha256sum >/dev/null 2>&1; then
  sha256() { sha256sum -- "$1" | cut -d' ' -f1; }
elif command -v shasum >/dev/null 2>&1; then
  sha256() { shasum -a 256 -- "$1" | cut -d' ' -f1; }
else
  die "need sha256sum (coreutils) or shasum to verify the models"
fi

origin_url() {
  case "$1" in
    stories260K/stories260K.bin | stories260K/tok512.bin)
      echo "https://huggingface.co/karpathy/tinyllamas/resolve/main/$1" ;;
    stories260K/stories260K.gguf)
      echo "https://huggingface.co/ggml-org/models/resolve/main/tinyllamas/stories260K.gguf" ;;
    tinystories-656k/*)
      echo "https://huggingface.co/raincandy-u/TinyStories-656K/resolve/main/${1#tinystories-656k/}" ;;
    tinystories-656k-gguf/TinyStories-656K-IQ4_NL.gguf)
      # A real llama.cpp quantisation, as committed in a public repository.
      echo "https://raw.githubusercontent.com/bpolania/brok-clu-demo/6b87600f/models/local_llm/model.bin" ;;
    *) return 1 ;;
  esac
}

# fetch_one <relative path> <expected sha256>: returns 0 once $dest/<rel> is verified.
fetch_one() {
  local rel="$1" want="$2" target="$dest/$1" tmp got url
  mkdir -p "$(dirname "$target")"
  tmp="$(mktemp "$target.partial.XXXXXX")"
  current_tmp="$tmp"
  chmod 644 -- "$tmp"  # mktemp creates 0600; models are plain data files

  if [[ -n "$mirror" && -f "$mirror/$rel" ]]; then
    if cat -- "$mirror/$rel" >"$tmp"; then
      got="$(sha256 "$tmp")"
      if [[ "$got" == "$want" ]]; then
        mv -f -- "$tmp" "$target"
        note "copied $rel from $mirror"
        return 0
      fi
      note "mirror copy $mirror/$rel has SHA-256 $got, expected $want; trying the origin"
    else
      note "could not copy $mirror/$rel; trying the origin"
    fi
  fi

  url="$(origin_url "$rel")" || { note "no origin known for $rel"; rm -f -- "$tmp"; return 1; }
  if ! command -v curl >/dev/null 2>&1; then
    note "curl not found, cannot download $url"
    rm -f -- "$tmp"
    return 1
  fi
  note "downloading $rel from $url"
  if ! curl -fsSL --retry 3 --connect-timeout 20 -o "$tmp" "$url"; then
    note "download failed: $url"
    rm -f -- "$tmp"
    return 1
  fi
  got="$(sha256 "$tmp")"
  if [[ "$got" != "$want" ]]; then
    note "downloaded $rel has SHA-256 $got, expected $want"
    rm -f -- "$tmp"
    return 1
  fi
  mv -f -- "$tmp" "$target"
  return 0
}

# Remove a half-written file if we are interrupted.
current_tmp=""
trap 'if [[ -n "$current_tmp" ]]; then rm -f -- "$current_tmp"; fi' EXIT

[[ -f "$manifest" ]] || die "missing manifest $manifest"

failed=()
while read -r want rel; do
  [[ -z "${want:-}" || "$want" == \#* ]] && continue
  rel="${rel#\*}"  # tolerate sha256sum's binary-mode marker
  target="$dest/$rel"
  if [[ -f "$target" ]]; then
    got="$(sha256 "$target")"
    [[ "$got" == "$want" ]] && continue
    note "$target has SHA-256 $got, expected $want; fetching it again"
  fi
  fetch_one "$rel" "$want" || failed+=("$rel")
done <"$manifest"

if ((${#failed[@]} > 0)); then
  echo "fetch_models: error: could not obtain ${#failed[@]} model file(s) with the expected SHA-256:" >&2
  printf '  %s\n' "${failed[@]}" >&2
  echo "Set DEPASS_MODEL_MIRROR to a directory holding them (laid out like models/)," >&2
  echo "or make https://huggingface.co reachable, then run \`make models\` again." >&2
  exit 1
fi
