#!/usr/bin/env bash
# The demo (README command one): builds rampart, puts it between a client
# network and a server network in namespaces, runs docs/examples/demo.toml,
# shows what passes and what does not with real tools (curl, ping, TCP
# connects), prints the appliance's counters and removes everything.
#
# Needs root (namespaces, AF_XDP). Installs its Debian packages with
# scripts/install-deps.sh. Uses only 198.18.0.0/24 and 2001:db8::/64, inside
# namespaces named rdemo<pid>-*.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

if [ "$(id -u)" -ne 0 ]; then
  echo "error: the demo needs root (network namespaces and AF_XDP)" >&2
  exit 2
fi
scripts/install-deps.sh
echo "== building rampart (release)"
cargo build --release -q -p rampart-control
bin=$root/target/release/rampart

p="rdemo$$"
C="$p-c" FW="$p-fw" S="$p-s"
work=$(mktemp -d)
rampart_pid=""
server_pid=""
cleanup() {
  [ -n "$rampart_pid" ] && kill "$rampart_pid" 2>/dev/null && wait "$rampart_pid" 2>/dev/null || true
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null || true
  for ns in "$C" "$FW" "$S"; do ip netns del "$ns" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

echo "== topology: $C (client network) <-> $FW (rampart: a0 | b0) <-> $S (server network)"
for ns in "$C" "$FW" "$S"; do ip netns add "$ns"; ip -n "$ns" link set lo up; done
ip -n "$C" link add c0 type veth peer name a0 netns "$FW"
ip -n "$S" link add s0 type veth peer name b0 netns "$FW"
for pair in "$C c0" "$S s0" "$FW a0" "$FW b0"; do
  set -- $pair
  # Offloads that hand XDP frames larger than the MTU or without checksums.
  ip netns exec "$1" ethtool -K "$2" tso off gso off gro off tx off rx off >/dev/null 2>&1 || true
  ip -n "$1" link set "$2" up
done
ip -n "$C" addr add 198.18.0.1/24 dev c0
ip -n "$C" addr add 198.18.0.10/24 dev c0
ip -n "$C" addr add 2001:db8::1/64 dev c0 nodad
ip -n "$S" addr add 198.18.0.20/24 dev s0
ip -n "$S" addr add 198.18.0.30/24 dev s0
ip -n "$S" addr add 2001:db8::20/64 dev s0 nodad

echo "== starting rampart with docs/examples/demo.toml"
ip netns exec "$FW" "$bin" run -c docs/examples/demo.toml --state-dir "$work/state" \
  >"$work/rampart.out" 2>"$work/rampart.err" &
rampart_pid=$!
for _ in $(seq 50); do
  grep -q "running" "$work/rampart.out" 2>/dev/null && break
  if ! kill -0 "$rampart_pid" 2>/dev/null; then cat "$work/rampart.err" >&2; exit 1; fi
  sleep 0.1
done
cat "$work/rampart.out"

# The server network: a web server (v4 and v6) on web-1, and plain TCP
# services that greet with a banner: SSH on web-1, MySQL on db-1, and a
# listener on the client network for db-1 to try to reach.
cat >"$work/servers.py" <<'PY'
import http.server, socket, sys, threading
class Web(http.server.SimpleHTTPRequestHandler):
    def do_GET(self):
        body = b"hello from web-1 behind rampart\n"
        self.send_response(200); self.send_header("Content-Length", str(len(body))); self.end_headers(); self.wfile.write(body)
    def log_message(self, *a): pass
class Web6(http.server.ThreadingHTTPServer):
    address_family = socket.AF_INET6
def banner(addr, port, text):
    fam = socket.AF_INET6 if ":" in addr else socket.AF_INET
    s = socket.socket(fam); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind((addr, port)); s.listen()
    while True:
        c, _ = s.accept(); c.sendall(text.encode()); c.close()
for addr, port, text in [("198.18.0.20", 22, "SSH-2.0-demo\n"), ("198.18.0.30", 3306, "mysql-demo ready\n")]:
    threading.Thread(target=banner, args=(addr, port, text), daemon=True).start()
threading.Thread(target=http.server.ThreadingHTTPServer(("198.18.0.20", 80), Web).serve_forever, daemon=True).start()
threading.Thread(target=Web6(("2001:db8::20", 80), Web).serve_forever, daemon=True).start()
print("ready", flush=True)
threading.Event().wait()
PY
ip netns exec "$S" python3 "$work/servers.py" >"$work/servers.out" 2>&1 &
server_pid=$!
for _ in $(seq 50); do grep -q ready "$work/servers.out" 2>/dev/null && break; sleep 0.1; done

# connect NS SRC DST PORT: prints what the service said, or fails after 3 s.
connect() {
  ip netns exec "$1" python3 -c '
import socket, sys
src, dst, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
s = socket.create_connection((dst, port), timeout=3, source_address=(src, 0))
print(s.recv(100).decode().strip())' "$2" "$3" "$4"
}

failed=0
check() { # check EXPECT("pass"|"blocked") DESCRIPTION COMMAND...
  local expect=$1 what=$2; shift 2
  local out
  if out=$("$@" 2>&1); then got=pass; else got=blocked; fi
  if [ "$got" = "$expect" ]; then mark="ok  "; else mark="FAIL"; failed=1; fi
  printf '  [%s] %-58s %s\n' "$mark" "$what" "$( [ "$got" = pass ] && echo "passed: $(echo "$out" | tail -1 | cut -c1-40)" || echo "blocked (timed out)")"
}

echo
echo "== traffic through the appliance"
check pass    "HTTP client -> web-1:80 (allowed)"            ip netns exec "$C" curl -sS --max-time 3 http://198.18.0.20/
check pass    "HTTP over IPv6 client -> [2001:db8::20]:80"    ip netns exec "$C" curl -sS --max-time 3 "http://[2001:db8::20]/"
check blocked "SSH client -> web-1:22 (no rule: times out)"  connect "$C" 198.18.0.1 198.18.0.20 22
check pass    "ping client -> web-1 (ICMP echo allowed)"     ip netns exec "$C" ping -c 2 -i 0.2 -W 2 198.18.0.20
check pass    "ping6 client -> web-1"                        ip netns exec "$C" ping -6 -c 2 -i 0.2 -W 2 2001:db8::20
check pass    "ping -s 3000 client -> web-1 (fragments)"     ip netns exec "$C" ping -s 3000 -c 2 -i 0.2 -W 2 198.18.0.20
check pass    "ping6 -s 3000 client -> web-1 (fragments)"    ip netns exec "$C" ping -6 -s 3000 -c 2 -i 0.2 -W 2 2001:db8::20
check pass    "app-1 -> db-1:3306 (group app), reply back"   connect "$C" 198.18.0.10 198.18.0.30 3306
check blocked "client -> db-1:3306 (not in group app)"       connect "$C" 198.18.0.1 198.18.0.30 3306
check blocked "ping client -> db-1 (advanced group, no rule)" ip netns exec "$C" ping -c 1 -W 2 198.18.0.30

echo
echo "== stopping rampart (SIGTERM)"
kill -TERM "$rampart_pid"
wait "$rampart_pid" && rc=0 || rc=$?
rampart_pid=""
cat "$work/rampart.out" | sed -n '/stopped/,$p'
if [ -s "$work/rampart.err" ]; then sed 's/^/  log: /' "$work/rampart.err"; fi
left=$(ip -n "$FW" link show | grep -c 'xdp' || true)
echo "XDP programs left on the ports: $left"
if [ "$rc" -ne 0 ] || [ "$left" -ne 0 ] || [ "$failed" -ne 0 ]; then
  echo "demo: FAILED (rampart exit $rc)"
  exit 1
fi
echo "demo: all checks as expected"
