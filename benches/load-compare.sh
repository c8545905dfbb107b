#!/usr/bin/env bash
# The webhook against the least a webhook can do over the same transport: a minimal axum +
# rustls server that only reads the review and answers "allowed" (examples/baseline_server.rs).
# Both on one core, the generator (wrk with benches/loadgen.lua, 16 keep-alive TLS
# connections) on the other; the highest rate of each, with a different ~5 KB document in
# every request and with the same one repeated (what GitOps re-applies send; the verdict
# memo's case). Prints the rates and asyncapi-guard's share of the baseline's. wrk, in C,
# drives the baseline about 3 times as fast as the Python generator of the soak could, so
# the baseline's rate is the server's, not the generator's. Any answer but 200 fails the run.
# The VM's speed drifts by a tenth within minutes, so the two servers are measured in turns,
# ROUNDS times (each round in the other order from the last), and the median of the rounds'
# shares is the figure; every round's is printed too.
#
#   benches/load-compare.sh [seconds] [rounds]   (default 10 and 3; needs wrk: apt-get install wrk)
#
# ASYNCAPI_GUARD_BINARY=target/image/asyncapi-guard measures that binary (the image's, from
# scripts/release-build) instead of `cargo build --release`'s, as the loader bench does.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-10}
rounds=${2:-3}
work=$(mktemp -d)
pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"' EXIT
# asyncapi-guard's release build only when no other binary is given to measure.
build=(--example baseline_server)
[ -n "${ASYNCAPI_GUARD_BINARY:-}" ] || build+=(--bin asyncapi-guard)
cargo build --release --locked "${build[@]}" >/dev/null
binary=${ASYNCAPI_GUARD_BINARY:-target/release/asyncapi-guard}

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
"${server_cpu[@]}" "$binary" serve --listen "127.0.0.1:$guard" --metrics-listen "127.0.0.1:$((guard + 1))" \
  --tls-cert "$work/tls.crt" --tls-key "$work/tls.key" 2>/dev/null &
pids+=($!)
"${server_cpu[@]}" target/release/examples/baseline_server "127.0.0.1:$baseline" "$work/tls.crt" "$work/tls.key" &
pids+=($!)
sleep 1

command -v wrk >/dev/null || { echo "load-compare: needs wrk (apt-get install wrk)" >&2; exit 2; }
# rate PORT unique|repeat RUN: requests per second; fails on any answer but 200. Each run
# numbers its documents from its own start (a run sends far fewer than 10 million).
rate() {
  local out
  out=$(LOADGEN_MODE=$2 LOADGEN_START=$(($3 * 10000000)) "${load_cpu[@]}" wrk -t1 -c16 -d"${seconds}s" -s benches/loadgen.lua "https://localhost:$1/validate")
  if grep -qE "Non-2xx|Socket errors" <<<"$out"; then
    echo "load-compare: errors against port $1:" >&2
    echo "$out" >&2
    exit 1
  fi
  awk '/^Requests\/sec:/ { printf "%d", $2 }' <<<"$out"
}
share() { python3 -c "print(f'{$1 / $2:.2f}')"; }
median() { python3 -c "import statistics, sys; print(f'{statistics.median(map(float, sys.argv[1:])):.2f}')" "$@"; }
for mode in unique repeat; do
  shares=()
  for round in $(seq "$rounds"); do
    if [ $((round % 2)) = 1 ]; then
      base=$(rate "$baseline" "$mode" $((2 * round))); ours=$(rate "$guard" "$mode" $((2 * round + 1)))
    else
      ours=$(rate "$guard" "$mode" $((2 * round + 1))); base=$(rate "$baseline" "$mode" $((2 * round)))
    fi
    shares+=("$(share "$ours" "$base")")
    echo "  $mode, round $round: baseline $base req/s, asyncapi-guard $ours req/s: ${shares[-1]}"
  done
  case $mode in
    unique) what="every request a different document" ;;
    repeat) what="the same document repeated         " ;;
  esac
  echo "$what: $(median "${shares[@]}") of the baseline (median of ${rounds} rounds: ${shares[*]})"
done
