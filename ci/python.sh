#!/usr/bin/env bash
# The Python package's checks: build and install `picsou` (bindings-python/, pyo3 + maturin)
# into a virtual environment under the cargo target directory, then run its pytest suite, the
# stub check (mypy.stubtest, plus mypy --strict over the package, tests and examples) and both
# examples (figures.py in its quick mode, writing into the target directory). Idempotent;
# needs python3 (>= 3.10, with venv) and what ci/setup.sh installs. Exits non-zero on any
# failure.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$(pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
VENV="$CARGO_TARGET_DIR/python-venv"
PYTHON="${PYTHON:-python3}"

echo "== python: virtual environment $VENV"
if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
fi
PY="$VENV/bin/python"
"$PY" -m pip install -q --disable-pip-version-check -r bindings-python/requirements-dev.txt

echo "== python: pip install ./bindings-python (maturin builds the extension module)"
"$PY" -m pip install -q --disable-pip-version-check --force-reinstall --no-deps ./bindings-python

echo "== python: pytest"
# From another directory, so that the installed package is the one imported.
(cd bindings-python/tests && "$PY" -m pytest -q -p no:cacheprovider .)

echo "== python: type stubs (mypy.stubtest) and mypy --strict"
(cd "$CARGO_TARGET_DIR" && "$PY" -m mypy.stubtest picsou)
"$PY" -m mypy --strict --no-incremental --cache-dir=/dev/null \
  bindings-python/tests examples/python

echo "== python: examples/python/two_rsms.py (4 + 4 replicas over TCP)"
"$PY" examples/python/two_rsms.py --messages 5000

echo "== python: examples/python/figures.py --quick"
"$PY" examples/python/figures.py --quick --out "$CARGO_TARGET_DIR/python-figures"
test -s "$CARGO_TARGET_DIR/python-figures/throughput_vs_rsm_size.png"
test -s "$CARGO_TARGET_DIR/python-figures/throughput_vs_message_size.png"
echo "python checks passed"
