#!/usr/bin/env bash
# Configures and builds mlxn into build/ (CUDA backend on when nvcc is found).
# Extra CMake arguments pass through, e.g. scripts/build.sh -DMLXN_CUDA=OFF
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
"$here/scripts/setup.sh"
werror=${MLXN_WERROR:-OFF}
cmake -S "$here" -B "$here/build" -DCMAKE_BUILD_TYPE=Release -DMLXN_WERROR="$werror" "$@" >/dev/null
cmake --build "$here/build" -j"$(nproc)"
