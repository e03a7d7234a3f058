#!/usr/bin/env bash
# Runs the libFuzzer harnesses of tests/fuzz (built by `make build-fuzz` into build-fuzz/fuzz/) for SECONDS each,
# one after the other, each on a scratch copy of its seed corpus (tests/fuzz/corpus/<name>, regression inputs
# included) so that the repository's corpus is not touched. Fails when any harness finds something (crash,
# sanitizer report, leak, timeout, out of memory) and prints the reproducer's path and the report.
#
#   scripts/fuzz.sh [SECONDS] [HARNESS...]     default: 20 s, every harness
#   BUILD_FUZZ=dir   the build folder (default build-fuzz)
#   FUZZ_KEEP=1      keep the scratch folder (grown corpora, logs) even when nothing was found
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-20}
shift || true
build=${BUILD_FUZZ:-build-fuzz}
if [ $# -gt 0 ]; then
  names=("$@")
else
  names=()
  for f in tests/fuzz/*_fuzz.cpp; do
    n=$(basename "$f" .cpp)
    names+=("${n%_fuzz}")
  done
fi

scratch=$(mktemp -d "${TMPDIR:-/tmp}/pi-fuzz-XXXXXX")
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:allocator_may_return_null=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
failed=0
printf '%-14s %8s %10s %8s %8s %s\n' harness seconds execs exec/s corpus result
for name in "${names[@]}"; do
  bin=$build/fuzz/${name}_fuzz
  [ -x "$bin" ] || { echo "fuzz.sh: $bin is not built (make build-fuzz)" >&2; exit 2; }
  work=$scratch/$name
  mkdir -p "$work/corpus" "$work/artifacts"
  [ -d "tests/fuzz/corpus/$name" ] && cp -r "tests/fuzz/corpus/$name/." "$work/corpus/"
  dict=()
  if [ -f "tests/fuzz/$name.dict" ]; then
    dict=("-dict=tests/fuzz/$name.dict")
  else
    case $name in attestation | collateral | event_log | gpu_evidence | json_check | nras | signature)
      dict=("-dict=tests/fuzz/json.dict") ;;
    esac
  fi
  start=$(date +%s)
  rc=0
  "$bin" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="$work/artifacts/" "${dict[@]}" "$work/corpus" >"$work/log" 2>&1 || rc=$?
  took=$(($(date +%s) - start))
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$work/log" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$work/log" | tail -1)
  size=$(find "$work/corpus" -type f | wc -l)
  artifacts=$(find "$work/artifacts" -type f)
  if [ "$rc" -ne 0 ] || [ -n "$artifacts" ]; then
    failed=1
    printf '%-14s %8s %10s %8s %8s %s\n' "$name" "$took" "${execs:--}" "${rate:--}" "$size" "FOUND (exit $rc)"
    echo "---- $name: last lines of $work/log"
    tail -n 60 "$work/log"
    for a in $artifacts; do
      echo "---- reproducer: $a"
      echo "     re-run:     $bin $a"
    done
  else
    printf '%-14s %8s %10s %8s %8s %s\n' "$name" "$took" "${execs:--}" "${rate:--}" "$size" ok
  fi
done

if [ "$failed" -ne 0 ]; then
  echo "fuzz.sh: findings above; scratch kept in $scratch (add a minimised reproducer to tests/fuzz/corpus/<name>/)" >&2
  exit 1
fi
if [ "${FUZZ_KEEP:-0}" = 1 ]; then echo "scratch kept in $scratch"; else rm -rf "$scratch"; fi
