#!/usr/bin/env bash
# The relightable-asset acceptance numbers, in one go (about 35 min on the 2-core VM):
# suzanne relighting + LOD study on one balanced conversion, then the mixed-materials scene.
set -euo pipefail
cd "$(dirname "$0")/.."
python bench/relight.py --object suzanne --preset balanced
python bench/lods.py --glb bench/.runs/suzanne_standard_transparent_balanced/scene.glb \
    --capture bench/.captures/suzanne_standard_transparent
python bench/relight.py --object materials --preset balanced
