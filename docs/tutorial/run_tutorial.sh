#!/usr/bin/env bash
# The plugin-author tutorial end to end, as CI runs it (`make tutorial`):
#   1. a FRESH virtual environment with codi-sdk, the four built-in plugins and codi-sketch;
#   2. the sketch plugin's own tests;
#   3. the tutorial's training command: sketch against a frozen, already trained base;
#   4. the tutorial's compose examples, checked by the probes (non-zero exit below the thresholds).
#
# Usage: docs/tutorial/run_tutorial.sh [BASE]
#   BASE      'shipped' (default: the four plugins' shipped ToyWorld weights) or a run folder
#             written by `codi train toyworld --out` (also settable as TUTORIAL_BASE).
# Environment: TUTORIAL_WORK (folder for the venv and the run; default a new temporary folder,
#   removed afterwards unless TUTORIAL_KEEP=1), PYTHON (default python3), and the thresholds
#   TUTORIAL_MIN_SKETCH_VIDEO (0.85) and TUTORIAL_MIN_SKETCH_TEXT_VIDEO (0.80, each attribute).
set -euo pipefail
cd "$(dirname "$0")/../.."
base=${1:-${TUTORIAL_BASE:-shipped}}
python=${PYTHON:-python3}
if [[ -n "${TUTORIAL_WORK:-}" ]]; then
  work=$TUTORIAL_WORK
  mkdir -p "$work"
else
  work=$(mktemp -d -t codi-tutorial.XXXXXX)
  [[ "${TUTORIAL_KEEP:-0}" == 1 ]] || trap 'rm -rf "$work"' EXIT
fi
pip_flags=(-q --disable-pip-version-check -c constraints.txt)
t0=$SECONDS
phase() { echo "== $1 ($((SECONDS - t0)) s)"; }

phase "fresh venv in $work/venv"
rm -rf "$work/venv"
"$python" -m venv "$work/venv"
export PATH="$work/venv/bin:$PATH" VIRTUAL_ENV="$work/venv"
python -m pip install "${pip_flags[@]}" torch==2.13.0
python -m pip install "${pip_flags[@]}" -e ".[dev]" \
  -e plugins/codi-image -e plugins/codi-video -e plugins/codi-audio -e plugins/codi-text \
  -e docs/tutorial/codi-sketch
codi plugins

phase "codi-sketch tests"
(cd docs/tutorial/codi-sketch && python -m pytest -q -p no:cacheprovider tests)

BASE=$base RUN=$work/run
phase "train sketch against base '$BASE'"
# --8<-- [start:train]
codi train toyworld --base "$BASE" --modalities sketch \
  --recipe docs/tutorial/codi-sketch/recipe.json --out "$RUN"
# --8<-- [end:train]

phase "compose examples"
# --8<-- [start:compose]
python docs/tutorial/compose_examples.py --run "$RUN"
# --8<-- [end:compose]
phase "done"
