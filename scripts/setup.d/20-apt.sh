#!/usr/bin/env bash
# System packages: debootstrap (builds the OS-task rootfs), MariaDB (the DB env's server
# backend), Chromium + ChromeDriver (MiniWoB++), a Java runtime (ScienceWorld's JVM).
set -euo pipefail
need=()
command -v debootstrap >/dev/null || need+=(debootstrap)
command -v mariadbd >/dev/null || [ -x /usr/sbin/mariadbd ] || need+=(mariadb-server)
command -v chromium >/dev/null || need+=(chromium)
command -v chromedriver >/dev/null || need+=(chromium-driver)
command -v java >/dev/null || need+=(default-jre-headless)
# tcmalloc: the trainer runs on it (agentune/malloc.py, CPU training 1.2-1.5x faster than on glibc's malloc)
ldconfig -p 2>/dev/null | grep -q "libtcmalloc_minimal\.so\.4 " || need+=(libtcmalloc-minimal4)
command -v unshare >/dev/null || need+=(util-linux)
# the OS sandbox's seccomp filter (agentune/jail.py loads libseccomp through ctypes)
ldconfig -p 2>/dev/null | grep -q 'libseccomp\.so\.2 ' || need+=(libseccomp2)
if [ ${#need[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
