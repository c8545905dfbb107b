#!/usr/bin/env bash
# Load test of `asyncapi-guard serve`: POSTs a ~5 KB ConfigMap AdmissionReview over TLS with
# keep-alive at several concurrencies, then at half the highest rate found, and prints
# requests/s, p50, p99 and the server's RSS. Installs its load generator (oha) itself.
#
# On a machine with two cores or more the server is pinned to core 0 and the generator to
# core 1, so that they do not steal each other's time. At half the highest rate, p99 is
# given as measured from each request's send (service time) and with oha's
# coordinated-omission correction (from its scheduled time); the same corrected run against
# /healthz shows how much of that tail is the generator's own scheduling.
#
#   benches/load.sh [seconds-per-step]        (default 10)
set -euo pipefail
cd "$(dirname "$0")/.."
step_seconds=${1:-10}
port=18443
metrics_port=19090
work=$(mktemp -d)
trap 'kill "$server" 2>/dev/null || true; rm -rf "$work"' EXIT

command -v oha >/dev/null || cargo install oha --locked
command -v python3 >/dev/null || { echo "python3 is needed to build the request and read the results"; exit 2; }
cargo build --release --locked --bin asyncapi-guard >/dev/null

# A labelled ConfigMap carrying a secure AsyncAPI document, about 5 KB as a request.
python3 - "$work/review.json" <<'PY'
import json, sys
doc = ["asyncapi: 3.0.0", "info:", "  title: Orders", "  version: 1.0.0", "servers:"]
for i in range(4):
    doc += [f"  production-{i}:", f"    host: kafka-{i}.example.com:9093", "    protocol: kafka-secure",
            "    security:", "      - $ref: '#/components/securitySchemes/scram'"]
doc += ["channels:"]
for i in range(12):
    doc += [f"  orders{i}:", f"    address: orders.{i}.events", "    messages:", "      event:",
            "        payload:", "          type: object", "          properties:",
            "            id: {type: string}", "            amount: {type: number}"]
doc += ["operations:"]
for i in range(12):
    doc += [f"  publish{i}:", "    action: send", "    channel:", f"      $ref: '#/channels/orders{i}'",
            "    security:", "      - $ref: '#/components/securitySchemes/scram'"]
doc += ["components:", "  securitySchemes:", "    scram:", "      type: scramSha512"]
review = {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
    "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
    "kind": {"group": "", "version": "v1", "kind": "ConfigMap"},
    "resource": {"group": "", "version": "v1", "resource": "configmaps"},
    "name": "orders-api", "namespace": "payments", "operation": "CREATE",
    "userInfo": {"username": "load"},
    "object": {"apiVersion": "v1", "kind": "ConfigMap",
               "metadata": {"name": "orders-api", "namespace": "payments",
                            "labels": {"asyncapi-guard.io/document": "true"}},
               "data": {"asyncapi.yaml": "\n".join(doc) + "\n"}},
    "oldObject": None, "dryRun": False}}
body = json.dumps(review)
open(sys.argv[1], "w").write(body)
print(f"request body: {len(body)} bytes", file=sys.stderr)
PY

if curl -s -o /dev/null "http://127.0.0.1:$metrics_port/healthz" || curl -sk -o /dev/null "https://127.0.0.1:$port/healthz"; then
  echo "ports $port or $metrics_port are taken: stop what listens there first"; exit 2
fi
server_cpu=() generator_cpu=()
if [ "$(nproc)" -ge 2 ] && command -v taskset >/dev/null; then
  server_cpu=(taskset -c 0) generator_cpu=(taskset -c 1)
fi
ASYNCAPI_GUARD_SELF_SIGNED_DIR=$work "${server_cpu[@]}" target/release/asyncapi-guard serve \
  --listen 127.0.0.1:$port --metrics-listen 127.0.0.1:$metrics_port --shutdown-delay 0s \
  >/dev/null 2>"$work/server.log" &
server=$!
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$metrics_port/readyz" >/dev/null && break; sleep 0.1; done

url="https://localhost:$port/validate?timeout=10s"
run() {  # run LABEL OHA-ARGS... : prints one line of results
  local label=$1; shift
  "${generator_cpu[@]}" oha --no-tui --insecure --output-format json -z "${step_seconds}s" -m POST \
      -H 'Content-Type: application/json' -D "$work/review.json" "$@" "$url" >"$work/out.json"
  python3 - "$label" "$work/out.json" "$server" <<'PY'
import json, sys
label, out, pid = sys.argv[1], json.load(open(sys.argv[2])), sys.argv[3]
s, p = out["summary"], out["latencyPercentiles"]
codes = out.get("statusCodeDistribution", {})
rss = next((l.split()[1] for l in open(f"/proc/{pid}/status") if l.startswith("VmRSS")), "?")
print(f"{label:>22}  {s['requestsPerSec']:9.0f} req/s   p50 {p['p50']*1000:7.3f} ms   p99 {p['p99']*1000:7.3f} ms   "
      f"ok {s['successRate']*100:5.1f}%  codes {codes}  server RSS {int(rss)/1024:.1f} MiB")
PY
}

echo "== asyncapi-guard serve under load: $(nproc) cores${server_cpu:+ (server on core 0, generator on core 1)}, ${step_seconds}s per step, TLS with keep-alive"
best=0
for c in 1 2 4 8 16 32; do
  run "concurrency $c" -c "$c"
  rate=$(python3 -c "import json;print(int(json.load(open('$work/out.json'))['summary']['requestsPerSec']))")
  [ "$rate" -gt "$best" ] && best=$rate
done
half=$((best / 2))
echo "== highest rate ${best} req/s; at half of it, ${half} req/s:"
run "service time" -c 2 -q "$half"
run "corrected" -c 2 -q "$half" --latency-correction
url="https://localhost:$port/healthz"
"${generator_cpu[@]}" oha --no-tui --insecure --output-format json -z "${step_seconds}s" -c 2 -q "$half" --latency-correction "$url" >"$work/out.json"
python3 - "$work/out.json" <<'PY'
import json, sys
p = json.load(open(sys.argv[1]))["latencyPercentiles"]
print(f"{'/healthz, corrected':>22}  (generator baseline)         p50 {p['p50']*1000:7.3f} ms   p99 {p['p99']*1000:7.3f} ms")
PY
echo "== peak server RSS: $(awk '/VmHWM/ {printf "%.1f MiB", $2/1024}' /proc/$server/status)"
grep -c '"admission"' "$work/server.log" | xargs echo "requests logged:"
