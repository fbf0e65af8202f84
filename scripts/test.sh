#!/usr/bin/env bash
# Set up everything the tests need (bpy, the Khronos glTF-Validator, three.js + headless Chromium
# for the web reader test), then run every test.
set -euo pipefail
NRCONVERT_EXTRAS="[test,blender,dist]"
. "$(dirname "$0")/setup_env.sh"
echo "==> installing the Khronos glTF-Validator (npm)"
(cd "$ROOT/tools/validator" && npm ci --no-audit --no-fund --silent)
# The three.js reader test (tests/test_threejs.py): three.js from npm, headless Debian Chromium
# driven by playwright's Python wheel (pointed at /usr/bin/chromium; never `playwright install`).
echo "==> installing three.js (npm) and playwright (pip) for the web reader test"
(cd "$ROOT/tools/web" && npm ci --no-audit --no-fund --silent)
python -m pip install -q "playwright==1.65.2"
if ! command -v chromium >/dev/null 2>&1; then
  echo "==> installing Chromium (Debian package)"
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null
  elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    sudo -n apt-get update -qq
    sudo -n env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null
  else
    echo "    cannot install Chromium without root: tests/test_threejs.py will skip"
  fi
fi
cd "$ROOT"
# The add-on is a Blender 4.2+ extension, so the Blender tests also run on Blender 4.2 LTS:
# bpy==4.2.0 in its own venv (one bpy per venv), with numpy < 2 as Blender 4.2 ships it (the
# bpy 4.2 wheel leaves numpy unpinned). torch goes in first, as in setup_env.sh.
VENV42="$ROOT/.venv-bpy42"
if [ ! -x "$VENV42/bin/python" ]; then
  echo "==> creating virtualenv $VENV42"
  "$PY" -m venv "$VENV42"
fi
PY42="$VENV42/bin/python"
"$PY42" -m pip install -q --upgrade pip >/dev/null
if ! "$PY42" -c "import torch" >/dev/null 2>&1; then
  # torch is the largest package (~0.8 GB) and CI machines can be short of disk: hard-link the
  # main venv's torch (the same files, no extra space) where both venvs share a filesystem.
  SP="$(python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
  SP42="$("$PY42" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
  if cp -al "$SP"/torch "$SP"/torch-*.dist-info "$SP"/torchgen "$SP"/functorch "$SP42"/ 2>/dev/null \
      && "$PY42" -m pip show -q torch >/dev/null 2>&1; then
    echo "==> torch hard-linked from $VENV into $VENV42"
  else
    rm -rf "$SP42"/torch "$SP42"/torch-*.dist-info "$SP42"/torchgen "$SP42"/functorch
    echo "==> installing torch==2.13.0 (CPU) into $VENV42"
    "$PY42" -m pip install -q "torch==2.13.0"
  fi
fi
echo "==> installing bpy==4.2.0 and nrconvert[test] into $VENV42"
"$PY42" -m pip install -q "bpy==4.2.0" "numpy>=1.26,<2" -e "$ROOT[test]"
# Tests run in parallel, one pytest worker per core (NRCONVERT_TEST_WORKERS to change), each test
# file on one worker (its module fixtures are made once), and one torch thread per process: two
# processes that each spin two OpenMP threads on two cores slow each other down several-fold.
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
WORKERS="${NRCONVERT_TEST_WORKERS:-auto}"
# bpy and torch must not share a process: the converter tests and the Blender tests run apart.
echo "==> converter tests"
python -m pytest tests -q -p no:cacheprovider -n "$WORKERS" --dist loadfile "$@"
# Blender 5.0 and Blender 4.2 LTS side by side (two processes; 4.2's output follows 5.0's).
echo "==> Blender tests (Blender 5.0; Blender 4.2 LTS beside it)"
LOG42="$(mktemp)"
"$PY42" -m pytest blender_tests -q -p no:cacheprovider "$@" > "$LOG42" 2>&1 &
PID42=$!
status=0
python -m pytest blender_tests -q -p no:cacheprovider "$@" || status=$?
rc42=0
wait "$PID42" || rc42=$?
echo "==> Blender tests on Blender 4.2 LTS"
cat "$LOG42"
rm -f "$LOG42"
[ "$status" = 0 ] && [ "$rc42" = 0 ]
