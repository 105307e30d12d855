#!/bin/sh
# CI stage: vendor SDKs (pytmv1, vt-py, intezer-sdk) against the lab's Vision One, VirusTotal
# and Intezer simulators, in their own virtualenv. Everything stays on 127.0.0.1; the only
# network use is pip reaching PyPI when the venv is first created.
#
#   tests/conformance/vendor/run.sh            # venv in /tmp/tibridge-vendor
#   VENV=/somewhere tests/conformance/vendor/run.sh
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
venv=${VENV:-/tmp/tibridge-vendor}
if ! "$venv/bin/python" -c 'import pytmv1, vt, intezer_sdk' 2>/dev/null; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet -r "$here/requirements.txt"
fi
cd "$root"
TIBRIDGE_VENDOR_PYTHON="$venv/bin/python" \
    cargo test -p tibridge-lab --test triage_sims vendor_sdks_accept_the_simulators -- --nocapture
