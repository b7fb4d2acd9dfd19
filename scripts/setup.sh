#!/usr/bin/env bash
# Sets up a fresh machine: the Python venv, system packages, the OS-task rootfs, the base model.
# Idempotent: every step skips what is already done. Each piece lives in scripts/setup.d/.
set -euo pipefail
cd "$(dirname "$0")/.."
for step in scripts/setup.d/*.sh; do
  echo "== setup: $(basename "$step")"
  bash "$step"
done
echo "== setup done"
