#!/usr/bin/env bash
# A bounded soak of `umi serve` on the bundled model over loopback: 2,000
# streamed requests, 16 concurrent, 10% hung up mid-stream, 1% malformed,
# after a 1,000-request warm-up. The memory limit is small enough that the
# prefix cache reaches it during the warm-up, so resident memory must then
# stay flat. Fails on any unexpected answer (5xx, a cut stream, a malformed
# body not refused with 4xx), on resident memory 2% above its post-warm-up
# figure, or when SIGTERM does not end the server with exit 0.
#   tools/soak.sh BUILD_DIR
set -euo pipefail
build=${1:?usage: tools/soak.sh BUILD_DIR}
log=$(mktemp)
"$build/src/umi" serve --port 0 -t 2 --memory-limit 64MiB >"$log" 2>&1 &
pid=$!
trap 'kill -9 $pid 2>/dev/null || true; rm -f "$log"' EXIT
port=""
for _ in $(seq 200); do
  port=$(grep -oE 'listening on http://[^:]+:[0-9]+' "$log" | grep -oE '[0-9]+$' || true)
  [[ -n $port ]] && break
  sleep 0.05
done
[[ -n $port ]] || { echo "umi serve did not start:"; cat "$log"; exit 1; }
status=0
"$build/bench/umi_bench_server_load" --port "$port" --concurrency 16 --requests 2000 --warmup 1000 \
  --prompt-tokens 32 --max-tokens 16 --cancel 0.1 --malformed 0.01 --vocab 2000 --max-rss-growth 2 || status=$?
kill -TERM $pid
server_status=0
wait $pid || server_status=$?
if ((status != 0 || server_status != 0)); then
  echo "soak failed (load: exit $status, server: exit $server_status); server log:"; cat "$log"; exit 1
fi
echo "soak passed"
