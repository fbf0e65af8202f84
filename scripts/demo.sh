#!/usr/bin/env bash
# Set up, then convert the bundled sample capture into out/demo.glb (+ out/demo.report/).
set -euo pipefail
. "$(dirname "$0")/setup_env.sh"
echo "==> installing the Khronos glTF-Validator (npm), which checks the GLB"
(cd "$ROOT/tools/validator" && npm ci --no-audit --no-fund --silent)
mkdir -p "$ROOT/out"
nrconvert "$ROOT/samples/suzanne" -o "$ROOT/out/demo.glb" --preset "${PRESET:-fast}" "$@"
