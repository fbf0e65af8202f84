# Sourced by demo.sh and test.sh: a local virtualenv with nrconvert installed.
# Installs the CPU build torch==2.13.0 first when the venv has no torch (an unpinned `torch` would
# pull a multi-GB CUDA build); bring your own CUDA torch by installing it into .venv beforehand.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PYTHON:-python3.11}"
command -v "$PY" >/dev/null 2>&1 || PY=python3
VENV="${NRCONVERT_VENV:-$ROOT/.venv}"
if [ ! -x "$VENV/bin/python" ]; then
  echo "==> creating virtualenv $VENV"
  "$PY" -m venv "$VENV"
fi
# shellcheck disable=SC1091
. "$VENV/bin/activate"
python -m pip install -q --upgrade pip >/dev/null
if ! python -c "import torch" >/dev/null 2>&1; then
  echo "==> installing torch==2.13.0 (CPU)"
  python -m pip install -q "torch==2.13.0"
fi
echo "==> installing nrconvert${NRCONVERT_EXTRAS:-}"
python -m pip install -q -e "$ROOT${NRCONVERT_EXTRAS:-}"
