#!/bin/bash
# usage.sh FLUXKIT: --help of each command exits 0 and prints its usage;
# unknown commands and options are usage errors (exit 2) with a one-line
# message naming them.
FK="$1"
pass=0
fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*" >&2; }
expect_rc() { # expect_rc WANT DESCRIPTION -- CMD...
    local want="$1" what="$2"
    shift 3
    "$@" >/dev/null 2>&1
    local rc=$?
    if [ "$rc" = "$want" ]; then ok; else bad "$what: exit $rc, expected $want"; fi
}

[ -x "$FK" ] || { echo "usage: $0 FLUXKIT_BINARY" >&2; exit 2; }

expect_rc 0 "fluxkit --help" -- "$FK" --help
expect_rc 0 "fluxkit --version" -- "$FK" --version
expect_rc 2 "fluxkit (no command)" -- "$FK"
for cmd in info init-random eval; do
    expect_rc 0 "$cmd --help" -- "$FK" "$cmd" --help
    out=$("$FK" "$cmd" --help 2>&1)
    if echo "$out" | grep -q "usage: fluxkit $cmd"; then ok; else bad "$cmd --help does not print its usage"; fi
    expect_rc 2 "$cmd --no-such-option" -- "$FK" "$cmd" --no-such-option
    err=$("$FK" "$cmd" --no-such-option 2>&1 >/dev/null)
    if echo "$err" | grep -q -- "--no-such-option"; then ok; else bad "$cmd: message does not name the option: $err"; fi
    if [ "$(echo "$err" | wc -l)" = 1 ]; then ok; else bad "$cmd: usage error is not one line: $err"; fi
    expect_rc 2 "$cmd -Z" -- "$FK" "$cmd" -Z
done
# bench: its own options belong to its author; only --help is checked here
expect_rc 0 "bench --help" -- "$FK" bench --help

expect_rc 2 "unknown command" -- "$FK" no-such-command
err=$("$FK" no-such-command 2>&1 >/dev/null)
if echo "$err" | grep -q "no-such-command"; then ok; else bad "unknown command not named: $err"; fi

# options that need a value, bad values
expect_rc 2 "info --filter without value" -- "$FK" info --filter
expect_rc 2 "info without PATH" -- "$FK" info
expect_rc 2 "info two PATHs" -- "$FK" info a b
expect_rc 2 "info --system with PATH" -- "$FK" info --system x
expect_rc 0 "info --system" -- "$FK" info --system
expect_rc 0 "info --system --json" -- "$FK" info --system --json
expect_rc 2 "init-random --threads abc" -- "$FK" init-random --preset tiny-flux -o /dev/null --threads abc
expect_rc 2 "init-random --seed -1" -- "$FK" init-random --preset tiny-flux -o /dev/null --seed -1
expect_rc 2 "init-random --dtype q4" -- "$FK" init-random --preset tiny-flux -o /dev/null --dtype q4
expect_rc 2 "eval --threads x" -- "$FK" eval flux --threads x

echo "usage.sh: $pass passed, $fail failed"
[ "$fail" = 0 ]
