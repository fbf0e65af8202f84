#!/usr/bin/env bash
# Set up everything the tests need (bpy, the Khronos glTF-Validator), then run every test.
set -euo pipefail
NRCONVERT_EXTRAS="[test,blender]"
. "$(dirname "$0")/setup_env.sh"
echo "==> installing the Khronos glTF-Validator (npm)"
(cd "$ROOT/tools/validator" && npm ci --no-audit --no-fund --silent)
cd "$ROOT"
# bpy and torch must not share a process: the converter tests and the Blender tests run apart.
echo "==> converter tests"
python -m pytest tests -q -p no:cacheprovider "$@"
echo "==> Blender tests"
python -m pytest blender_tests -q -p no:cacheprovider "$@"
