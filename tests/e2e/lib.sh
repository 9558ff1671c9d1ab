# Shared by the end-to-end scripts: a scratch directory removed at exit, pass/fail counting, and a check
# that a command fails with a given message. Source it after setting `bin` (the build directory).
set -uo pipefail
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fails=0
pass() { echo "ok: $1"; }
fail() { echo "FAIL: $1"; fails=$((fails + 1)); }
expect_error() {  # name, expected text, command...
    local name="$1" text="$2"
    shift 2
    if out=$("$@" 2>&1); then fail "$name: exited 0"; return; fi
    if grep -qF -- "$text" <<<"$out"; then pass "$name"; else fail "$name: message lacks '$text': $out"; fi
}
finish() {  # suite name: prints the count and exits non-zero on any failure
    echo "$1: $fails failed"
    [ "$fails" -eq 0 ]
    exit
}
