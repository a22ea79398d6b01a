# Derived results (quantized models, finetuning runs, evaluations) are reused by the demo and the
# experiments only when the lqlora binary that made them is the one built now: each is stamped with
# the binary's hash in NAME.made-by, and anything unstamped or stamped by another build is made
# again. (A figure once came from a model an older build had left behind.)
# Source after setting $bin; then `fresh PATH || { make PATH; stamp PATH; }`.
build_id=$(sha256sum "$bin" | cut -c1-16)
fresh() { [ -e "$1" ] && [ "$(cat "$1.made-by" 2>/dev/null)" = "$build_id" ]; }
stamp() { echo "$build_id" > "$1.made-by"; }
# An --ilp-cache made by another version of the error-table code is refused by `quantize` (it would
# mix two codes' numbers); a script's own cache is only a cache: `stale_cache FILE` removes it when
# this build's quantize says so (a dry run that only reads the file's header is `lqlora allocate`).
stale_cache() {
  [ -f "$1" ] || return 0
  if ! "$bin" allocate --ilp-cache "$1" --budget 3 >/dev/null 2>"$1.check"; then
    grep -q "was made by" "$1.check" && { echo "removing $1: made by another version of the error-table code"; rm -f "$1"; }
  fi
  rm -f "$1.check"
}
