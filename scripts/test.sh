#!/usr/bin/env bash
# Builds mlxn and runs the whole test suite. CUDA cases run when a GPU is present and skip,
# with the reason printed, when not.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
"$here/scripts/build.sh" "$@"
"$here/build/tests/mlxn_tests" --gtest_brief=1
