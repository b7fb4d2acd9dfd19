#!/usr/bin/env bash
# The Debian root filesystem of the OS-interaction sandbox (built once, then reused by every episode).
# Building it (debootstrap) and running the sandbox need root; without root the os env is unavailable.
set -euo pipefail
if [ "$(id -u)" != 0 ]; then
  echo "rootfs: skipped (not root); the os environment needs root, or backend=docker"
  exit 0
fi
bash scripts/build_rootfs.sh
