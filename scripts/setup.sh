#!/usr/bin/env bash
# Installs what mlxn needs to build and test, from Debian's archive only.
# Idempotent: packages already present are left alone, and apt is not touched at all
# when nothing is missing. The CUDA toolkit is not a Debian package here: when nvcc is
# on PATH (or in /usr/local/cuda/bin) the build uses it, otherwise it builds CPU-only.
set -euo pipefail

packages=(
  cmake g++ make pkg-config
  libgtest-dev googletest      # unit tests
  nlohmann-json3-dev           # JSON (bench output, configs)
  libcli11-dev                 # the mlxn command line
  clang libclang-rt-14-dev libomp-dev  # libFuzzer targets (scripts/fuzz-smoke.sh)
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  sudo_cmd=()
  [[ $(id -u) -ne 0 ]] && sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
  echo "setup: all build dependencies present"
fi
