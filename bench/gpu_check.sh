#!/usr/bin/env bash
# The GPU checks, in one go, for a machine with a CUDA GPU and a CUDA torch but no project install
# (a lent GPU box: Python 3.12, torch cu13, no Blender, no internet). Builds the extension with its
# CUDA part, runs the GPU parity suite (every op against its torch reference, on the GPU), the
# kernel benchmark on the GPU (extension vs reference in one process) and a training benchmark on
# a capture carried along (rendered here with `nrconvert synth`, which needs Blender).
#
#   bash bench/gpu_check.sh [OUTDIR]            # OUTDIR defaults to bench/results/gpu
#   NRC_TRAIN_PRESETS="fast balanced" NRC_TRAIN_TIMEOUT=240 NRC_SKIP="parity kernels" bash bench/gpu_check.sh
#   NRC_WHEELS=.gpuwheels NRC_CONVERT="bench/.captures/suzanne_standard_transparent" bash bench/gpu_check.sh
#
# NRC_WHEELS=DIR installs the wheels in DIR first (no index, no dependencies): the lent box has no
# xatlas, fast-simplification or pygltflib, which a whole conversion needs (`pip download xatlas
# fast-simplification pygltflib --python-version 3.12 --only-binary=:all: --platform
# manylinux_2_28_x86_64 -d DIR` here, less what the box already has). NRC_CONVERT="CAP ..." then
# converts each capture end to end (`--preset ${NRC_CONVERT_PRESET:-balanced}`, `--no-validate`
# where there is no Node.js) and keeps the GLB's size, the report's metrics.json and the log: the
# per-stage seconds on that machine; NRC_KEEP_GLB=1 keeps the GLB too (validate it here).
#
# Each step is capped (`timeout`) so one hang cannot eat the rest; logs and JSON land in OUTDIR.
set -uo pipefail
cd "$(dirname "$0")/.."
OUTDIR=${1:-bench/results/gpu}
mkdir -p "$OUTDIR"
export PYTHONUNBUFFERED=1 MAX_JOBS=${MAX_JOBS:-16}
PY=${PYTHON:-python3}

# the package's import name is nrconvert, its folder converter/: map it without installing
if ! $PY -c "import nrconvert" 2>/dev/null; then
  mkdir -p /tmp/nrc_site && ln -sfn "$PWD/converter" /tmp/nrc_site/nrconvert
  export PYTHONPATH="/tmp/nrc_site:$PWD${PYTHONPATH:+:$PYTHONPATH}"
fi
export NRCONVERT_EXT_DIR=${NRCONVERT_EXT_DIR:-/tmp/nrc_ext}
# NRC_ARCHIVE=FILE.tgz: pack OUTDIR after every step (a machine that returns few files, or a run cut short)
pack() { [ -n "${NRC_ARCHIVE:-}" ] && tar czf "$NRC_ARCHIVE" -C "$OUTDIR" . ; true; }

if [ -n "${NRC_WHEELS:-}" ]; then
  $PY -m pip install --no-deps --no-index -q "$NRC_WHEELS"/*.whl 2>&1 | tail -2
fi
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm --format=csv | tee "$OUTDIR/gpu.txt"
$PY -c "import torch,sys; print('python', sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.version.cuda)" \
  | tee -a "$OUTDIR/gpu.txt"

echo "== build"
( time timeout 400 $PY -c "from nrconvert.kernels import build_extension, backend; print(build_extension(verbose=False)); print(backend('cuda'))" ) \
  > "$OUTDIR/build.log" 2>&1; tail -5 "$OUTDIR/build.log"; pack
grep -qx "cuda-ext" "$OUTDIR/build.log" || {
  echo "CUDA kernels did not build"; cat "$NRCONVERT_EXT_DIR"/*/build.log > "$OUTDIR/ext_build.log" 2>/dev/null
  tail -c 6000 "$OUTDIR/ext_build.log"; pack; exit 1; }

skip() { [[ " ${NRC_SKIP:-} " == *" $1 "* ]]; }
if ! skip parity; then
echo "== parity (gpu)"
timeout 300 $PY -m pytest tests/test_kernels_composite.py tests/test_kernels_hashgrid.py tests/test_kernels_march.py \
  tests/test_kernels_raster.py tests/test_pbr.py tests/test_neural_distill.py -m gpu -q -rs -p no:cacheprovider --timeout 120 > "$OUTDIR/parity.log" 2>&1
echo "parity rc=$?"; tail -25 "$OUTDIR/parity.log"; pack
fi

if ! skip kernels; then
echo "== kernels bench"
timeout 240 $PY bench/kernels.py --device cuda --threads 16 --out "$OUTDIR" > "$OUTDIR/kernels.log" 2>&1
echo "kernels rc=$?"; tail -12 "$OUTDIR/kernels.log"; pack
fi

for preset in ${NRC_TRAIN_PRESETS:-balanced}; do
  for bg in ${NRC_TRAIN_BACKGROUNDS:-transparent}; do
    cap=bench/.captures/suzanne_standard_$bg
    [ -d "$cap" ] || { echo "no capture $cap (carry it)"; continue; }
    echo "== train $preset $bg"
    timeout "${NRC_TRAIN_TIMEOUT:-200}" $PY bench/train.py --device cuda --preset "$preset" --background "$bg" \
      --capture "$cap" --every 200 > "$OUTDIR/train-$preset-$bg.log" 2>&1
    echo "train rc=$?"; tail -3 "$OUTDIR/train-$preset-$bg.log"
    cp bench/results/train-$bg-$preset-cuda.json "$OUTDIR/" 2>/dev/null; pack
  done
done

# no Node.js there (the lent box has none): the GLB is written unchecked; check it where there is one
command -v node >/dev/null || NO_VALIDATE=--no-validate
for cap in ${NRC_CONVERT:-}; do
  name=$(basename "$cap"); dest="/tmp/nrc_convert/$name"; mkdir -p "$dest"
  echo "== convert $name"
  ( time timeout "${NRC_CONVERT_TIMEOUT:-300}" $PY -m nrconvert "$cap" -o "$dest/scene.glb" \
      --preset "${NRC_CONVERT_PRESET:-balanced}" ${NO_VALIDATE:-} ) > "$OUTDIR/convert-$name.log" 2>&1
  echo "convert rc=$?"; tr '\r' '\n' < "$OUTDIR/convert-$name.log" | grep -E "time:|PSNR|psnr|real" | tail -14
  ls -la "$dest/scene.glb" >> "$OUTDIR/convert-$name.log" 2>&1
  [ -n "${NRC_KEEP_GLB:-}" ] && cp "$dest/scene.glb" "$OUTDIR/convert-$name.glb"
  cp "$dest/scene.report/metrics.json" "$OUTDIR/convert-$name-metrics.json" 2>/dev/null; pack
done
