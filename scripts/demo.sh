#!/usr/bin/env bash
# The main job end to end, on a throwaway sshd on loopback:
#   1. start a throwaway OpenSSH sshd and a tunneld holding a connection to it
#   2. exec: run commands on the host, stream output, get the exit code
#   3. open-local  (ssh -L): reach a service "behind" the SSH server
#   4. open-remote (ssh -R): expose a local web app through the SSH server
#   5. list, then close both tunnels and show the ports are freed
#   6. --attach: a tunnel that lives only while tunnelctl runs (ssh -N -L)
# Everything it starts is stopped on exit. Only loopback is used.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/ensure-deps.sh
echo "==> building" >&2
cargo build --workspace --bins --quiet

work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
show() { printf '$ %s\n' "$*" >&2; "$@"; }

# 1. throwaway sshd + tunneld (the same fixture the tests use)
step "starting a throwaway sshd and tunneld on loopback"
mkfifo "$work/testbed.out"
target/debug/testbed --no-stdin >"$work/testbed.out" 2>"$work/testbed.log" &
pids+=($!)
while IFS= read -r line; do
  [ "$line" = READY ] && break
  echo "  $line"
  export "${line?}"
done <"$work/testbed.out"
: "${TUNNELD_ADDR:?testbed did not report TUNNELD_ADDR; see $work/testbed.log}"
export TUNNELD_ADDR
# keep draining the fifo so testbed never blocks on it
cat "$work/testbed.out" >/dev/null &
pids+=($!)
ctl=target/debug/tunnelctl

# A "database" that only the SSH server can reach, and a local "web app".
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
mkdir -p "$work/db" "$work/app"
echo "rows from the service behind the bastion" >"$work/db/index.html"
echo "hello from the local web app" >"$work/app/index.html"
db_port=$(free_port)
app_port=$(free_port)
python3 -m http.server "$db_port" --bind 127.0.0.1 --directory "$work/db" >/dev/null 2>&1 &
pids+=($!)
python3 -m http.server "$app_port" --bind 127.0.0.1 --directory "$work/app" >/dev/null 2>&1 &
pids+=($!)
for p in "$db_port" "$app_port"; do
  for _ in $(seq 50); do curl -s -o /dev/null "http://127.0.0.1:$p/" && break; sleep 0.1; done
done

step "status and hosts"
show "$ctl" status
show "$ctl" hosts

# 2. exec
step "exec: run a command on the SSH host"
show "$ctl" exec -- uname -a
show "$ctl" exec -- 'echo to-stdout; echo to-stderr >&2; exit 3' || echo "(exit code $? — the remote one)"
echo "piped stdin" | show "$ctl" exec -- tr a-z A-Z

# 3. open-local (ssh -L)
step "open-local: reach port $db_port as seen from the SSH server (ssh -L)"
local_id=$(show "$ctl" -q open-local --lport 0 --rhost 127.0.0.1 --rport "$db_port")
echo "$local_id"
local_port=$("$ctl" -o json list | python3 -c "import json,sys; print(next(t['local']['port'] for t in json.load(sys.stdin)['tunnels'] if t['id']=='$local_id'))")
show curl -s "http://127.0.0.1:$local_port/"

# 4. open-remote (ssh -R)
step "open-remote: expose local port $app_port on the SSH server (ssh -R)"
remote_id=$(show "$ctl" -q open-remote --rport 0 --lport "$app_port")
echo "$remote_id"
remote_port=$("$ctl" -o json list | python3 -c "import json,sys; print(next(t['remote']['port'] for t in json.load(sys.stdin)['tunnels'] if t['id']=='$remote_id'))")
echo "# fetched on the SSH server, through its port $remote_port:"
show "$ctl" exec -- curl -s "http://localhost:$remote_port/"

# 5. list and close
step "list"
show "$ctl" list
step "close"
show "$ctl" close "$local_id" "$remote_id"
show "$ctl" list
if curl -s -m 2 -o /dev/null "http://127.0.0.1:$local_port/"; then
  echo "local port $local_port still answers: close failed" >&2
  exit 1
fi
echo "local port $local_port is free again"

# 6. attach (ssh -N -L): the tunnel lives as long as tunnelctl
step "open-local --attach: connections print as they come; SIGINT closes it"
"$ctl" open-local --attach --lport 0 --rhost 127.0.0.1 --rport "$db_port" >"$work/attach.out" &
attach_pid=$!
pids+=($attach_pid)
for _ in $(seq 100); do [ -s "$work/attach.out" ] && break; sleep 0.1; done
attach_port=$(head -1 "$work/attach.out" | sed -E 's/.* 127\.0\.0\.1:([0-9]+) -> .*/\1/')
show curl -s "http://127.0.0.1:$attach_port/"
show "$ctl" list
kill -INT "$attach_pid"
wait "$attach_pid"
cat "$work/attach.out"
if curl -s -m 2 -o /dev/null "http://127.0.0.1:$attach_port/"; then
  echo "attached port $attach_port still answers after tunnelctl ended" >&2
  exit 1
fi
echo "tunnelctl ended; port $attach_port is free again"

step "demo finished"
