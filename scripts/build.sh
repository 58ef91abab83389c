#!/usr/bin/env bash
# Configures (once) and builds pgfleet and its tests into ./build with warnings as errors.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -f build/build.ninja ]; then
  cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPGFLEET_WERROR=ON
fi
cmake --build build
