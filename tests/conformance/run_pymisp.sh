#!/bin/sh
# Run the PyMISP conformance check of the lab MISP (crates/lab/tests/pymisp_conformance.rs,
# which starts the lab MISP on 127.0.0.1 and runs pymisp_lab.py against it).
# Creates the verifier venv on first use (PyPI only), pinned as in shared/contracts/verifiers.md.
set -eu
VENV="${TIBRIDGE_VERIFY_VENV:-/tmp/tibridge-verify}"
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c "import pymisp" 2>/dev/null; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q "pymisp==2.5.34.4"
fi
cd "$(dirname "$0")/../.."
TIBRIDGE_PYTHON_VERIFY="$VENV/bin/python" exec cargo test -p tibridge-lab --test pymisp_conformance -- --nocapture
