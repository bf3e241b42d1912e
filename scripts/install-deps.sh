#!/usr/bin/env bash
# Installs the Debian packages rampart needs to build, test and run its demo,
# skipping those already installed:
# - building xsk-rs (libxdp and libbpf from source): clang llvm m4 make gcc
#   libelf-dev zlib1g-dev pkg-config, and libpcap-dev;
# - the namespace tests and the demo: iproute2 ethtool iputils-ping curl
#   python3 (the demo's web server), nftables.
set -euo pipefail
packages=(clang llvm m4 make gcc libc6-dev libelf-dev zlib1g-dev libpcap-dev pkg-config
  iproute2 ethtool iputils-ping curl python3 nftables)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "== installing: ${missing[*]}"
  sudo_cmd=()
  [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
  export DEBIAN_FRONTEND=noninteractive
  "${sudo_cmd[@]}" apt-get update -q
  "${sudo_cmd[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
