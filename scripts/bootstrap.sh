#!/usr/bin/env bash
# Create .venv if missing and install the pinned development requirements when they changed.
# Idempotent: a second run with unchanged requirements does nothing. Sourced by run-local and test.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$REPO/.venv"
PYTHON="${PYTHON:-python3}"

if [ ! -x "$VENV/bin/python" ]; then
  echo "bootstrap: creating $VENV"
  if ! "$PYTHON" -m venv "$VENV" 2>/dev/null; then
    if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
      echo "bootstrap: installing python3-venv"
      apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null
      rm -rf "$VENV"
      "$PYTHON" -m venv "$VENV"
    else
      echo "bootstrap: '$PYTHON -m venv' failed; install your distribution's python3-venv" >&2
      exit 1
    fi
  fi
fi

# VQI_TOOLCHAIN=0 leaves out the model toolchain (torch, ultralytics): the publish build needs
# neither, and the tests that do are deselected (tests/conftest.py).
TOOLCHAIN="${VQI_TOOLCHAIN:-1}"
REQUIREMENTS=("$REPO/requirements-dev.txt")
[ "$TOOLCHAIN" = 0 ] || REQUIREMENTS+=("$REPO/requirements-toolchain.txt")
STAMP="$VENV/.requirements.sha256"
WANT="$(cat "${REQUIREMENTS[@]}" | sha256sum | cut -d' ' -f1)"
if [ "$(cat "$STAMP" 2>/dev/null || true)" != "$WANT" ]; then
  echo "bootstrap: installing development requirements (first run takes a few minutes)"
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip
  if [ "$TOOLCHAIN" != 0 ] && [ -n "${VQI_TORCH_INDEX_URL:-}" ]; then
    # CPU-only torch first: the pins (torch==X) are then already met by X+cpu, so pip does not
    # fetch the default build's CUDA libraries (about 3 GB).
    echo "bootstrap: torch and torchvision from VQI_TORCH_INDEX_URL"
    pins="$(grep -E '^(torch|torchvision)==' "$REPO/requirements-toolchain.txt" | sed 's/$/+cpu/')"
    # shellcheck disable=SC2086
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check \
      --index-url "$VQI_TORCH_INDEX_URL" $pins
  fi
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check \
    $(printf -- '-r %s ' "${REQUIREMENTS[@]}")
  echo "$WANT" > "$STAMP"
fi
export VQI_TOOLCHAIN="$TOOLCHAIN"
export PATH="$VENV/bin:$PATH"
export YOLO_OFFLINE=1
