#!/usr/bin/env bash
# A/B timing of two fluxkit binaries (or two option sets) on a noisy machine:
# runs them alternately, A B A B ..., so that slow periods of the host hit both,
# and prints every run, the mean and median of each side and the ratio B / A.
#
#   bash tools/ab.sh [--runs N] [--a-opts OPTS] [--b-opts OPTS] BIN_A BIN_B -- COMMAND...
#   bash tools/ab.sh --runs 4 old/fluxkit build/fluxkit -- bench flux --weights F --res 512 --steps 4
#   bash tools/ab.sh --runs 4 --a-opts "--weight-cache off" build/fluxkit build/fluxkit -- \
#        bench flux --weights F --res 512 --steps 4
# (the ab.sh options come before the binaries; OPTS are appended to that side's command)
#
# The command after -- must be a `bench flux|t5|clip|ae ...` command: --json is
# added and the first "s_per_step" (bench flux) or "s" field of each JSON line is
# summed over the lines (resolutions) of a run. Needs only bash and awk.
set -euo pipefail
runs=3
aopts=""
bopts=""
while [ $# -gt 0 ]; do
    case "$1" in
    --runs) runs=$2; shift 2 ;;
    --a-opts) aopts=$2; shift 2 ;;
    --b-opts) bopts=$2; shift 2 ;;
    *) break ;;
    esac
done
[ $# -ge 3 ] || { sed -n '2,15p' "$0"; exit 2; }
a=$1 b=$2
shift 2
[ "${1:-}" = "--" ] || { echo "ab.sh: expected -- before the command" >&2; exit 2; }
shift
case "$runs" in '' | *[!0-9]*) echo "ab.sh: --runs: expected a count, got '$runs'" >&2; exit 2 ;; esac
[ "$runs" -ge 1 ] || { echo "ab.sh: --runs must be at least 1" >&2; exit 2; }

# seconds of one run: the sum over the JSON lines of s_per_step (or s)
one() {
    local bin=$1 opts=$2 out
    shift 2
    # shellcheck disable=SC2086
    out=$("$bin" "$@" $opts --json 2>/dev/null) || { echo "ab.sh: $bin $* failed" >&2; return 1; }
    printf '%s\n' "$out" | awk '
        /^\{/ {
            if (match($0, /"s_per_step": *[0-9.eE+-]+/) || match($0, /"s": *[0-9.eE+-]+/)) {
                v = substr($0, RSTART, RLENGTH); sub(/.*: */, "", v); t += v; n++
            }
        }
        END { if (n == 0) exit 1; printf "%.4f\n", t }'
}

ta=() tb=()
echo "A: $a $* $aopts"
echo "B: $b $* $bopts"
for ((i = 1; i <= runs; i++)); do
    x=$(one "$a" "$aopts" "$@") || exit 1
    y=$(one "$b" "$bopts" "$@") || exit 1
    ta+=("$x")
    tb+=("$y")
    printf 'run %d: A %s s  B %s s  (load %s)\n' "$i" "$x" "$y" "$(cut -d' ' -f1 /proc/loadavg)"
done
stats() { printf '%s\n' "$@" | sort -g | awk '{v[NR] = $1; s += $1} END {
    m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2; printf "%.4f %.4f", s / NR, m }'; }
read -r ma mda <<<"$(stats "${ta[@]}")"
read -r mb mdb <<<"$(stats "${tb[@]}")"
printf 'A: mean %s s, median %s s\nB: mean %s s, median %s s\n' "$ma" "$mda" "$mb" "$mdb"
awk -v a="$ma" -v b="$mb" -v c="$mda" -v d="$mdb" \
    'BEGIN { printf "B / A: %.3f (means), %.3f (medians); below 1: B faster\n", b / a, d / c }'
