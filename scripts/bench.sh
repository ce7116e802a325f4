#!/usr/bin/env bash
# Builds mlxn and runs the benchmarks on the best device present (the GPU if there is one).
# Arguments go to `mlxn bench` (--filter TEXT, --json FILE, --device cpu|cuda:N, --quick).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
"$here/scripts/build.sh"
"$here/build/mlxn" info
"$here/build/mlxn" bench "$@"
