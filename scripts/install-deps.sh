#!/usr/bin/env bash
# Installs the Debian packages rampart needs to build, test and run its demo,
# skipping those already installed:
# - building xsk-rs (libxdp and libbpf from source): clang llvm m4 make gcc
#   libelf-dev zlib1g-dev pkg-config, and libpcap-dev;
# - the namespace tests and the demo: iproute2 ethtool iputils-ping curl
#   python3 (the demo's web server), nftables;
# - the deployment tests: systemd (systemd-analyze verifies the unit);
# - the metrics tests: prometheus (its server and promtool; the tests start
#   their own server inside a namespace, so the package's service is kept
#   from starting while installing);
# - the fleet store: protobuf-compiler and libprotobuf-dev (the etcd client
#   crate compiles etcd's protos with protoc), etcd-server (the fleet tests
#   start their own etcd members on loopback; its service is kept from
#   starting too).
set -euo pipefail
packages=(clang llvm m4 make gcc libc6-dev libelf-dev zlib1g-dev libpcap-dev pkg-config
  iproute2 ethtool iputils-ping curl python3 nftables prometheus systemd
  protobuf-compiler libprotobuf-dev etcd-server)
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
  # No service starts during the install (prometheus would listen on :9090,
  # etcd on :2379).
  policy=/usr/sbin/policy-rc.d
  added_policy=0
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | "${sudo_cmd[@]}" tee "$policy" >/dev/null
    "${sudo_cmd[@]}" chmod 755 "$policy"
    added_policy=1
    trap '"${sudo_cmd[@]}" rm -f "$policy"' EXIT
  fi
  "${sudo_cmd[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
