# Sourced by the speed scripts: runs the speed binaries "$dir/speed-<name>" (20 seeds x 1
# simulated hour each) alternately for `rounds` rounds, so that all see the same machine
# load, then prints each name's median of the per-round medians.
#
#   alternate_rounds <dir> <rounds> <name>...
alternate_rounds() {
    local dir=$1 rounds=$2
    shift 2
    for _ in $(seq "$rounds"); do
        for which in "$@"; do
            echo "$which $("$dir/speed-$which" 20 1)"
        done
    done | tee "$dir/runs"
    for which in "$@"; do
        grep "^$which " "$dir/runs" | awk '{ gsub("x", "", $3); print $3 }' | sort -n |
            awk -v w="$which" '{ v[NR] = $1 } END { m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2; printf "%s: median of %d run medians %.0fx\n", w, NR, m }'
    done
}
