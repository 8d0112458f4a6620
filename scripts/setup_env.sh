#!/usr/bin/env bash
# Create .venv (Python 3.11+) and install one requirements file into it. Used by demo.sh and test.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
req="${1:-requirements.txt}"
py="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$py" -m venv .venv || { echo "could not create a virtual environment: install python3-venv (Debian: apt-get install python3-venv)"; exit 1; }
fi
stamp=".venv/.installed-$(basename "$req" .txt)-$(cat requirements*.txt | sha1sum | cut -c1-12)"
if [ ! -f "$stamp" ]; then
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -r "$req"
  touch "$stamp"
fi
