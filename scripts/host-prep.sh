#!/usr/bin/env bash
# Prepares a host's two NICs for rampart, and undoes it.
#
#   scripts/host-prep.sh up   --port-a DEV --port-b DEV --workers N --cores LIST [--state-dir DIR] [--dry-run]
#   scripts/host-prep.sh down --port-a DEV --port-b DEV [--state-dir DIR] [--dry-run]
#
# up, for each port: saves what it changes (in DIR, default /run/rampart),
# then: promiscuous mode on; the offloads that hand XDP merged or untagged
# frames off (GRO, LRO, TSO, GSO, VLAN stripping and insertion); N queues
# with the symmetric RSS key and address-only hashing (scripts/rss-symmetric.sh:
# both directions of a flow reach one worker); the NIC's interrupts moved off
# the worker cores (LIST, e.g. 2,3: the same as [appliance] cores). A device
# that cannot do one of these gets a warning, not a failure (veth has no RSS
# and no interrupts).
# down restores what up saved, from DIR.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)

usage() {
    echo "usage: $0 up|down --port-a DEV --port-b DEV [--workers N --cores LIST] [--state-dir DIR] [--dry-run]" >&2
    exit 2
}

action=${1:-}
[[ $action == up || $action == down ]] || usage
shift
port_a="" port_b="" workers="" cores="" state=/run/rampart dry=0
while [[ $# -gt 0 ]]; do
    case $1 in
    --port-a) port_a=$2; shift 2 ;;
    --port-b) port_b=$2; shift 2 ;;
    --workers) workers=$2; shift 2 ;;
    --cores) cores=$2; shift 2 ;;
    --state-dir) state=$2; shift 2 ;;
    --dry-run) dry=1; shift ;;
    *) usage ;;
    esac
done
[[ -n $port_a && -n $port_b ]] || usage
for dev in "$port_a" "$port_b"; do
    ip link show "$dev" >/dev/null 2>&1 || { echo "$0: no interface named '$dev'" >&2; exit 1; }
done
if [[ $action == up ]]; then
    [[ $workers =~ ^[0-9]+$ ]] && ((workers >= 1 && workers <= 64)) || { echo "$0: --workers must be 1-64" >&2; exit 2; }
    [[ $cores =~ ^[0-9]+(,[0-9]+)*$ ]] || { echo "$0: --cores must be a list like 2,3" >&2; exit 2; }
fi

run() {
    echo "+ $*"
    if ((dry == 0)); then
        "$@" || { echo "$0: warning: '$*' failed" >&2; return 1; }
    fi
}

offloads=(gro lro tso gso rxvlan txvlan)
# ethtool -k names of those offloads.
declare -A feature=([gro]=generic-receive-offload [lro]=large-receive-offload [tso]=tcp-segmentation-offload
    [gso]=generic-segmentation-offload [rxvlan]=rx-vlan-offload [txvlan]=tx-vlan-offload)

irqs_of() {
    awk -v dev="$1" '$0 ~ dev { sub(":", "", $1); print $1 }' /proc/interrupts
}

housekeeping() {
    # Every online core that is not a worker core.
    local all n list=()
    all=$(nproc --all)
    for ((n = 0; n < all; n++)); do
        [[ ",$cores," == *",$n,"* ]] || list+=("$n")
    done
    local IFS=,
    echo "${list[*]}"
}

up() {
    local dev=$1 saved="$state/host-prep-$1.env"
    if ((dry == 0)); then
        mkdir -p "$state"
        {
            echo "promisc=$(ip -d link show "$dev" | grep -q PROMISC && echo on || echo off)"
            for o in "${offloads[@]}"; do
                v=$(ethtool -k "$dev" 2>/dev/null | awk -v f="${feature[$o]}:" '$1 == f { print $2 }')
                echo "offload_$o=${v:-}"
            done
            echo "combined=$(ethtool -l "$dev" 2>/dev/null | awk '/Current hardware settings/ { c = 1 } c && $1 == "Combined:" { print $2; exit }')"
            for irq in $(irqs_of "$dev"); do
                echo "irq_$irq=$(cat "/proc/irq/$irq/smp_affinity_list")"
            done
        } >"$saved"
        echo "$dev: saved its settings in $saved"
    fi
    run ip link set dev "$dev" promisc on || true
    for o in "${offloads[@]}"; do
        run ethtool -K "$dev" "$o" off 2>/dev/null || true
    done
    if ((dry)); then
        "$here/rss-symmetric.sh" --dry-run "$dev" "$workers"
    else
        "$here/rss-symmetric.sh" "$dev" "$workers" ||
            echo "$0: warning: $dev cannot take the symmetric RSS setup; rampart hands frames between workers instead" >&2
    fi
    local hk irqs
    hk=$(housekeeping)
    irqs=$(irqs_of "$dev")
    if [[ -z $irqs ]]; then
        echo "$dev: no interrupts of its own (veth?): nothing to move"
    elif [[ -z $hk ]]; then
        echo "$0: warning: every core is a worker core; interrupts stay where they are" >&2
    else
        for irq in $irqs; do
            run sh -c "echo $hk > /proc/irq/$irq/smp_affinity_list" || true
        done
    fi
}

down() {
    local dev=$1 saved="$state/host-prep-$1.env"
    if [[ ! -f $saved ]]; then
        echo "$0: $dev: nothing saved in $saved (was 'up' run?)" >&2
        return 1
    fi
    while IFS='=' read -r key value; do
        case $key in
        promisc) run ip link set dev "$dev" promisc "$value" || true ;;
        offload_*) [[ -n $value ]] && { run ethtool -K "$dev" "${key#offload_}" "$value" 2>/dev/null || true; } ;;
        combined) [[ $value =~ ^[0-9]+$ ]] && { run ethtool -L "$dev" combined "$value" 2>/dev/null || true; } ;;
        irq_*) run sh -c "echo $value > /proc/irq/${key#irq_}/smp_affinity_list" || true ;;
        esac
    done <"$saved"
    ((dry)) || rm -f "$saved"
    echo "$dev: restored"
}

for dev in "$port_a" "$port_b"; do
    "$action" "$dev"
done
