#!/usr/bin/env bash
# The webhook against the least a webhook can do over the same transport: a minimal axum +
# rustls server that only reads the review and answers "allowed" (examples/baseline_server.rs).
# Both on one core, the generator (scripts/loadgen.py, 16 keep-alive TLS connections) on the
# other; the highest rate of each, with a different ~5 KB document in every request and with
# the same one repeated (what GitOps re-applies send; the verdict memo's case). Prints the
# rates and asyncapi-guard's share of the baseline's.
#
#   benches/load-compare.sh [seconds]        (default 10)
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-10}
work=$(mktemp -d)
pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"' EXIT
cargo build --release --locked --bin asyncapi-guard --example baseline_server >/dev/null

openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=bench-ca -keyout "$work/ca.key" -out "$work/ca.crt" 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj /CN=localhost -keyout "$work/tls.key" -out "$work/req.csr" 2>/dev/null
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' > "$work/san.ext"
openssl x509 -req -in "$work/req.csr" -CA "$work/ca.crt" -CAkey "$work/ca.key" -CAcreateserial -days 2 \
  -extfile "$work/san.ext" -out "$work/tls.crt" 2>/dev/null

server_cpu=() load_cpu=()
if [ "$(nproc)" -ge 2 ] && command -v taskset >/dev/null; then
  server_cpu=(taskset -c 0) load_cpu=(taskset -c 1)
fi
guard=$((20000 + RANDOM % 20000))
baseline=$((guard + 2))
"${server_cpu[@]}" target/release/asyncapi-guard serve --listen "127.0.0.1:$guard" --metrics-listen "127.0.0.1:$((guard + 1))" \
  --tls-cert "$work/tls.crt" --tls-key "$work/tls.key" 2>/dev/null &
pids+=($!)
"${server_cpu[@]}" target/release/examples/baseline_server "127.0.0.1:$baseline" "$work/tls.crt" "$work/tls.key" &
pids+=($!)
sleep 1

rate() { "${load_cpu[@]}" python3 scripts/loadgen.py max "$1" "$seconds" "$work/ca.crt" "$2" "$3"; }
base_unique=$(rate "$baseline" unique nocheck)
guard_unique=$(rate "$guard" unique check)
base_repeat=$(rate "$baseline" repeat nocheck)
guard_repeat=$(rate "$guard" repeat check)
share() { python3 -c "print(f'{$1 / $2:.2f}')"; }
echo "every request a different document: baseline ${base_unique} req/s, asyncapi-guard ${guard_unique} req/s: $(share "$guard_unique" "$base_unique") of the baseline"
echo "the same document repeated:          baseline ${base_repeat} req/s, asyncapi-guard ${guard_repeat} req/s: $(share "$guard_repeat" "$base_repeat") of the baseline"
