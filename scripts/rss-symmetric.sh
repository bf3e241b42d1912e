#!/usr/bin/env bash
# Programs a NIC's receive-side scaling so that every frame arrives on the
# queue of the rampart worker that owns its flow (see dataplane/src/handoff.rs):
#
#   - QUEUES combined channels (one per worker: worker i serves queue i);
#   - the symmetric Toeplitz key 6d5a repeated (40 bytes), so both directions
#     of a connection hash alike;
#   - hashing on source and destination IP address only, for TCP, UDP and SCTP
#     over IPv4 and IPv6 (later fragments carry no ports, so a hash over ports
#     would split a fragmented datagram across workers);
#   - the indirection table spread equally over the QUEUES queues.
#
# rampart stays correct without this (a frame that arrives on another worker's
# queue is copied to its owner); with it, nothing is copied. Run it for both
# ports before `rampart run`, with QUEUES equal to `[appliance] workers`.
#
# usage: scripts/rss-symmetric.sh [--dry-run] DEV QUEUES
#        scripts/rss-symmetric.sh --show DEV
set -euo pipefail

usage() {
    echo "usage: $0 [--dry-run] DEV QUEUES | --show DEV" >&2
    exit 2
}

dry=0
case "${1:-}" in
--show)
    [[ $# -eq 2 ]] || usage
    ethtool -l "$2" || true
    ethtool -x "$2"
    for flow in tcp4 udp4 sctp4 tcp6 udp6 sctp6; do
        echo "$flow: $(ethtool -n "$2" rx-flow-hash "$flow" 2>&1 | tr '\n' ' ')"
    done
    exit 0
    ;;
--dry-run)
    dry=1
    shift
    ;;
esac
[[ $# -eq 2 ]] || usage
dev=$1
queues=$2
if ! [[ $queues =~ ^[0-9]+$ ]] || ((queues < 1 || queues > 64)); then
    echo "$0: QUEUES must be 1-64 (one per worker), not '$queues'" >&2
    exit 2
fi

# The key rampart's owner function assumes (handoff::RSS_KEY).
key=$(printf '6d:5a:%.0s' $(seq 20))
key=${key%:}

run() {
    echo "+ $*"
    if ((dry == 0)); then
        "$@"
    fi
}

if ((dry == 0)) && ! ip link show "$dev" >/dev/null 2>&1; then
    echo "$0: no interface named '$dev'" >&2
    exit 1
fi
run ethtool -L "$dev" combined "$queues"
run ethtool -X "$dev" hkey "$key" equal "$queues"
for flow in tcp4 udp4 tcp6 udp6 sctp4 sctp6; do
    # s = source address, d = destination address (no ports).
    if ! run ethtool -N "$dev" rx-flow-hash "$flow" sd; then
        case $flow in
        sctp*) echo "$0: $dev cannot set the $flow hash (SCTP frames may be copied between workers)" >&2 ;;
        *) exit 1 ;;
        esac
    fi
done
echo "$dev: $queues queues, symmetric key, address-only hashing"
