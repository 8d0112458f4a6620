#!/usr/bin/env bash
# Set up (first run only) and run the whole test suite, browser tests included.
set -euo pipefail
cd "$(dirname "$0")/.."
# the emoji font only makes the browser tests' screenshots look as a visitor's browser shows the app
if ! command -v chromium >/dev/null 2>&1 || [ ! -f /usr/share/fonts/truetype/noto/NotoColorEmoji.ttf ]; then
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq && $sudo apt-get install -y -qq chromium chromium-driver fonts-noto-color-emoji >/dev/null
fi
bash scripts/setup_env.sh requirements-test.txt
export OMP_NUM_THREADS=1
exec .venv/bin/python -m pytest -q --durations=15 "$@"
