#!/usr/bin/env bash
# Whole runs as a user meets them, for one commit: `make install` and `make demo` from a fresh
# clone (the two together are what a first `make demo` takes), a warm rerun, `strat-llm build` of the real sample, and what they leave on disk.
#
#   bash bench/runs.sh <commit> [label]      # e.g. bash bench/runs.sh HEAD after
#
# Clones this repository at <commit> into ../bench-runs-<label> (removed first) and prints one
# line per figure; the runs' output goes to ../bench-runs-<label>.logs/. Compare two commits
# by running this twice in one sitting on a quiet machine (bench/README.md, "Whole runs").
set -uo pipefail
commit=${1:?usage: bash bench/runs.sh <commit> [label]}
label=${2:-$commit}
repo=$(cd "$(dirname "$0")/.." && pwd)
real=${REAL_SAMPLE:-$repo/../shared/data/real/contract}
dir=$(dirname "$repo")/bench-runs-$label
logs=$dir.logs
rm -rf "$dir" "$logs" && mkdir -p "$logs"
git clone -q "$repo" "$dir" && git -C "$dir" checkout -q "$commit" || exit 1
cd "$dir" || exit 1

seconds() { # seconds <name> <command...>: run, log its output, print the wall time
    local name=$1 start end rc
    shift
    start=$(date +%s.%N)
    "$@" >"$logs/$name.out" 2>&1
    rc=$?
    end=$(date +%s.%N)
    printf '%-34s %7.1f s  rc=%s\n' "$name" "$(echo "$end - $start" | bc)" "$rc"
}

echo "commit $(git rev-parse --short HEAD) on $(nproc) cores, $(date -u +%FT%TZ)"
seconds "make install (fresh clone)" make install
seconds "make demo (fresh clone, installed)" make demo
echo "demo output: $(wc -l <"$logs/make demo (fresh clone, installed).out") lines"
echo ".dagster_home after one demo: $(du -sm .dagster_home | cut -f1) MB"
seconds "make demo (warm rerun)" make demo
echo ".dagster_home after two demos: $(du -sm .dagster_home | cut -f1) MB"
data=$dir/real-data
seconds "ingest of the real sample" .venv/bin/strat-llm --data-dir "$data" ingest \
    --source files --allow-missing-sessions --path "$real"
seconds "build of the real sample" .venv/bin/strat-llm --data-dir "$data" build
mkdir -p "$dir/real-home" && cp dagster_project/dagster_home.yaml "$dir/real-home/dagster.yaml"
seconds "build, real, with DAGSTER_HOME" env DAGSTER_HOME="$dir/real-home" \
    .venv/bin/strat-llm --data-dir "$data" build
echo "DAGSTER_HOME after that build: $(du -sm "$dir/real-home" | cut -f1) MB"
