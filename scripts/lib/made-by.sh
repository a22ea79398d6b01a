# Derived results (quantized models, finetuning runs, evaluations) are reused by the demo and the
# experiments only when the lqlora binary that made them is the one built now: each is stamped with
# the binary's hash in NAME.made-by, and anything unstamped or stamped by another build is made
# again. (A figure once came from a model an older build had left behind.)
# Source after setting $bin; then `fresh PATH || { make PATH; stamp PATH; }`.
build_id=$(sha256sum "$bin" | cut -c1-16)
fresh() { [ -e "$1" ] && [ "$(cat "$1.made-by" 2>/dev/null)" = "$build_id" ]; }
stamp() { echo "$build_id" > "$1.made-by"; }
