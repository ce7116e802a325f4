#!/usr/bin/env bash
# Builds the libFuzzer targets (fuzz/, one per parser of weight files and their indexes) with
# clang, ASan and UBSan into build-fuzz/, and runs each for a short while on its seed corpus
# in fuzz/corpus/<parser>/. Inputs the run discovers go to a scratch directory, so the
# committed corpus does not change; a crash leaves its input in build-fuzz/artifacts/.
#   MLXN_FUZZ_SECONDS  seconds per target (default 30)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
secs=${MLXN_FUZZ_SECONDS:-30}
build="$here/build-fuzz"
cxx=$(command -v clang++ || command -v clang++-14 || true)
if [[ -z "$cxx" ]]; then
  echo "fuzz-smoke: clang++ not found (run scripts/setup.sh)" >&2
  exit 1
fi

cmake -S "$here" -B "$build" -DCMAKE_CXX_COMPILER="$cxx" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DMLXN_FUZZ=ON -DMLXN_CUDA=OFF -DMLXN_TESTS=OFF >/dev/null
cmake --build "$build" -j"$(nproc)" --target fuzz_safetensors fuzz_safetensors_index fuzz_gguf fuzz_config

mkdir -p "$build/artifacts"
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
for parser in safetensors safetensors_index gguf config; do
  echo "fuzz-smoke: fuzz_$parser for ${secs}s"
  mkdir -p "$scratch/$parser"
  dict=()
  [[ -f "$here/fuzz/$parser.dict" ]] && dict=(-dict="$here/fuzz/$parser.dict")
  log="$scratch/$parser.log"
  status=0
  "$build/fuzz/fuzz_$parser" -max_total_time="$secs" -rss_limit_mb=2048 -timeout=10 \
    -artifact_prefix="$build/artifacts/$parser-" -print_final_stats=1 "${dict[@]}" \
    "$scratch/$parser" "$here/fuzz/corpus/$parser" >"$log" 2>&1 || status=$?
  if [[ $status -ne 0 ]]; then
    tail -n 60 "$log" >&2
    echo "fuzz-smoke: fuzz_$parser failed (exit $status); the input is in $build/artifacts/" >&2
    exit "$status"
  fi
  grep -E "^(Done|stat::number_of_executed_units|stat::peak_rss_mb)" "$log" || true
done
echo "fuzz-smoke: all targets ran clean"
