#!/usr/bin/env bash
# Set up, then convert the bundled sample capture into out/demo.glb (+ out/demo.report/).
set -euo pipefail
. "$(dirname "$0")/setup_env.sh"
mkdir -p "$ROOT/out"
nrconvert "$ROOT/samples/suzanne" -o "$ROOT/out/demo.glb" --preset "${PRESET:-fast}" --no-validate "$@"
