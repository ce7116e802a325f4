#!/usr/bin/env bash
# The GPU check: on a machine with an NVIDIA GPU, builds mlxn (Release, warnings as errors),
# runs the whole test suite, the benchmarks and the peer scripts in one go, then prints a
# summary table (each bar: measured vs goal, with the peer's time) and leaves JSON in the
# folder given (default out/gpu-check).
#   scripts/gpu-check.sh [OUT_DIR]
# MLXN_DEPS_PREFIX: where GoogleTest/CLI11/nlohmann-json sources were unpacked, on machines
# that cannot install them (see CMakeLists.txt).
set -uo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
out=$(mkdir -p "${1:-$here/out/gpu-check}" && cd "${1:-$here/out/gpu-check}" && pwd)
build=${MLXN_BUILD_DIR:-$here/build-gpu}
gen=()
command -v ninja >/dev/null && gen=(-G Ninja)

cmake -S "$here" -B "$build" "${gen[@]}" -DCMAKE_BUILD_TYPE=Release -DMLXN_WERROR=ON \
  ${MLXN_DEPS_PREFIX:+-DMLXN_DEPS_PREFIX=$MLXN_DEPS_PREFIX} >"$out/configure.log" 2>&1 \
  || { tail -30 "$out/configure.log"; exit 1; }
cmake --build "$build" -j"$(nproc)" >"$out/build.log" 2>&1 || { grep -E "error|Error" "$out/build.log" | head -40; exit 1; }

"$build/mlxn" info | tee "$out/info.txt"
"$build/tests/mlxn_tests" --gtest_output=json:"$out/tests.json" >"$out/tests.log" 2>&1
test_rc=$?
grep -E "^\[  (FAILED|PASSED|SKIPPED) " "$out/tests.log" | tail -40
"$build/mlxn" bench --json "$out/bench.json" | tee "$out/bench.txt"
for peer in "$here"/bench/peers/*.py; do
  name=$(basename "$peer" .py)
  python3 "$peer" --json "$out/peers_$name.json" >"$out/peers_$name.log" 2>&1 \
    || { echo "peer $name failed:"; tail -5 "$out/peers_$name.log"; }
done
echo
python3 "$here/scripts/gpu_summary.py" "$out"
exit $test_rc
