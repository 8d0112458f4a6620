#!/usr/bin/env bash
# Set up (first run only) and start the demo on the bundled models and gallery: http://127.0.0.1:8501
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh requirements.txt
exec .venv/bin/python -m streamlit run app.py "$@"
