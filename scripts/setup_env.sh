#!/usr/bin/env bash
# Create .venv with Python 3.12 and install megatron_lwz for CPU (+ dev tools). Idempotent and quick
# when nothing changed. GPU clusters: afterwards `.venv/bin/pip install -e ".[gpu]"` (TE + vLLM).
set -euo pipefail
cd "$(dirname "$0")/.."

find_python() {
  if [ -n "${PYTHON:-}" ]; then echo "$PYTHON"; return; fi
  for cand in python3.12 "$HOME/.pyenv/versions/"3.12*/bin/python3.12 /root/.pyenv/versions/3.12*/bin/python3.12 \
              /usr/local/bin/python3.12 /usr/bin/python3.12; do
    if command -v "$cand" >/dev/null 2>&1 && "$cand" -c 'import sys; assert sys.version_info[:2] == (3, 12)' 2>/dev/null; then
      command -v "$cand"; return
    fi
  done
  echo "error: Python 3.12 not found; set PYTHON=/path/to/python3.12" >&2; exit 1
}

if [ ! -x .venv/bin/python ]; then
  "$(find_python)" -m venv .venv
fi
stamp=.venv/.lwz-installed
want=$(cat setup.py | sha256sum | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e ".[dev]"
  echo "$want" > "$stamp"
fi
