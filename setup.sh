#!/usr/bin/env bash
# One-command setup: creates .venv and installs metaal with every dependency.
#
#   bash setup.sh                 # uses python3 (3.11 or 3.12)
#   PYTHON=python3.12 bash setup.sh
#   METAAL_LOWEST=1 METAAL_VENV=.venv-lowest bash setup.sh
#                                 # every dependency at the lowest version pyproject.toml allows,
#                                 # to check that those bounds are true (CI runs the tests there too)
#
# Why not just `pip install -e .`?
#  * learn2learn 0.2.0 ships only an sdist whose generated C files do not compile on
#    Python >= 3.11 (upstream issue #413). With Cython installed and no build isolation,
#    `build_ext` regenerates them and the build succeeds.
#  * learn2learn declares qpth (which pins numpy<2), gsutil and cvxpy, none of which it
#    needs to import. We install learn2learn with --no-deps and install our own list
#    (pyproject.toml) instead, so numpy 2 keeps working.
#  * torch comes from PyPI's default build: it runs on CPU machines, and torchvision's
#    PyPI wheels only import against it (a CPU-only torch wheel breaks `import torchvision`).
set -euo pipefail
cd "$(dirname "$0")"

PYTHON=${PYTHON:-python3}
VENV=${METAAL_VENV:-.venv}

"$PYTHON" - <<'PY'
import sys
if not ((3, 11) <= sys.version_info[:2] <= (3, 12)):
    sys.exit(f"metaal needs Python 3.11 or 3.12, found {sys.version.split()[0]}; "
             "run with PYTHON=python3.11 (or python3.12) bash setup.sh")
PY

[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
PIP="$VENV/bin/python -m pip"
$PIP install --quiet --upgrade pip

# Every runtime and dev dependency named in pyproject.toml, except learn2learn.
# With METAAL_LOWEST=1, each lower bound "pkg>=X" becomes the pin "pkg==X".
deps=$(METAAL_LOWEST=${METAAL_LOWEST:-0} "$VENV/bin/python" - <<'PY'
import os, re, tomllib
project = tomllib.load(open("pyproject.toml", "rb"))["project"]
reqs = project["dependencies"] + project["optional-dependencies"]["dev"]
if os.environ["METAAL_LOWEST"] == "1":
    reqs = [re.sub(r">=([^,;\s]+)(,[^;\s]*)?", r"==\1", r) for r in reqs]
print("\n".join(r for r in reqs if not r.startswith("learn2learn")))
PY
)
l2l=$("$VENV/bin/python" -c 'import tomllib; print(next(r for r in tomllib.load(open("pyproject.toml","rb"))["project"]["dependencies"] if r.startswith("learn2learn")))')

echo "[setup] installing dependencies into $VENV"
mapfile -t dep_list <<<"$deps"
$PIP install --quiet "cython>=3" "setuptools>=77.0.3" "${dep_list[@]}"  # 77: an SPDX license in pyproject

if ! "$VENV/bin/python" -c 'import learn2learn' >/dev/null 2>&1; then
    echo "[setup] building $l2l from source (Cython workaround for upstream issue #413)"
    $PIP install --quiet --no-build-isolation --no-deps \
        --config-settings=--build-option=build_ext "$l2l"
fi

echo "[setup] installing metaal (editable)"
$PIP install --quiet --no-deps --no-build-isolation -e .

"$VENV/bin/python" - <<'PY'
import metaal.data  # first: it imports learn2learn without gym's numpy-2 notice
import numpy, torch, torchvision, learn2learn, wandb, metaal
print(f"[setup] ok: metaal {metaal.__version__}, torch {torch.__version__}, "
      f"torchvision {torchvision.__version__}, learn2learn {learn2learn.__version__}, "
      f"numpy {numpy.__version__}, cuda available: {torch.cuda.is_available()}")
PY
echo "[setup] done. Run the tests with: .venv/bin/python -m pytest"
