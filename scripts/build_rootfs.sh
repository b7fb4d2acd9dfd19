#!/usr/bin/env bash
# Builds the Debian root filesystem the OS-interaction episodes run on (once; ~/.cache/agentune/rootfs).
# Each episode mounts it read-only as the lower layer of a throwaway overlay (agentune/sandbox.py),
# so it is never modified after this script. Packages mirror AgentBench's task image (python3, pip,
# git, vim, curl, wget, zip, tree) plus the tools the task scripts and agents expect of a Linux box
# (ps, sudo, ifconfig/ip, lsof, bc, file, less). The sandbox has no network, so everything a task's
# init script would apt-get install must already be here.
# Usage: scripts/build_rootfs.sh [target_dir]   (env: AGENTUNE_CACHE, DEBIAN_MIRROR, DEBIAN_SUITE)
set -euo pipefail
cache=${AGENTUNE_CACHE:-$HOME/.cache/agentune}
target=${1:-$cache/rootfs}
suite=${DEBIAN_SUITE:-bookworm}
# default: the mirror this machine's apt already uses (it is the one we can reach)
mirror=${DEBIAN_MIRROR:-$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2>/dev/null \
  | grep -v '^ *#' | grep -oE 'https?://[^ ]+/debian/?( |$)' | head -n1 | tr -d ' ' || true)}
mirror=${mirror:-http://deb.debian.org/debian}
packages=python3,python3-pip,git,vim,curl,wget,unzip,zip,tree,procps,sudo,net-tools,iproute2,lsof,bc,file,less,psmisc,ca-certificates
stamp="$target/.agentune-rootfs"
want="$suite $mirror $packages"

if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  echo "rootfs: up to date in $target"; exit 0
fi
[ "$(id -u)" = 0 ] || { echo "build_rootfs.sh: must run as root (debootstrap)"; exit 1; }
command -v debootstrap >/dev/null || { echo "build_rootfs.sh: needs debootstrap (scripts/setup.d/20-apt.sh installs it)"; exit 1; }

# build next to the target and rename at the end, so a killed build never looks finished
mkdir -p "$(dirname "$target")"
tmp=$(mktemp -d "$target.build.XXXXXX")
trap 'rm -rf --one-file-system "$tmp"' EXIT
start=$(date +%s)
echo "rootfs: debootstrap $suite from $mirror into $tmp (a few minutes)"
debootstrap --variant=minbase --include="$packages" "$suite" "$tmp" "$mirror" > "$tmp.log" 2>&1 \
  || { tail -n 30 "$tmp.log"; rm -f "$tmp.log"; exit 1; }
rm -f "$tmp.log"

# container-like identity: hostname 'sandbox' resolves (sudo warns otherwise), no apt caches
echo sandbox > "$tmp/etc/hostname"
printf '127.0.0.1\tlocalhost\n127.0.1.1\tsandbox\n::1\tlocalhost ip6-localhost ip6-loopback\n' > "$tmp/etc/hosts"
: > "$tmp/etc/resolv.conf"
rm -rf "$tmp"/var/cache/apt/archives/*.deb "$tmp"/var/lib/apt/lists/*
# AgentBench's image runs everything from / as root with /root as home
echo "$want" > "$tmp/.agentune-rootfs"

[ -e "$target" ] && rm -rf --one-file-system "$target"
mv "$tmp" "$target"
trap - EXIT
echo "rootfs: built $target ($(du -sh "$target" | cut -f1)) in $(( $(date +%s) - start ))s"
