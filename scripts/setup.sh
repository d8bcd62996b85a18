#!/usr/bin/env bash
# Installs everything the demo and the tests need on a fresh Debian machine:
# Debian data/tool packages (only when missing), a .venv and the Python packages.
set -euo pipefail
cd "$(dirname "$0")/.."

DEB_PACKAGES=(dataset-fashion-mnist espeak-ng fortunes fortunes-min)
missing=()
for p in "${DEB_PACKAGES[@]}"; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if ((${#missing[@]})); then
    echo "setup: installing Debian packages: ${missing[*]}"
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    echo "setup: creating .venv"
    "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
# torch and torchvision are pinned as a pair: a torchvision that does not match
# the installed torch fails to import.
.venv/bin/python -m pip install -q "torch==2.14.1" "torchvision==0.29.1"
.venv/bin/python -m pip install -q -e ".[dev]"
touch .venv/.installed
echo "setup: done"
