#!/usr/bin/env bash
# asyncapi-guard check against the official @asyncapi/parser 3.6.3 over the example documents
# of ../shared/corpus/examples: the parser's time to parse them all (in one warm Node.js
# process, best of 5), against the whole `asyncapi-guard check` process over the same
# directory (best of 5). Prints both and the ratio. Installs the parser with npm in a
# temporary directory.
#
#   benches/parser-comparison.sh [DIR]        (default ../shared/corpus/examples)
set -euo pipefail
cd "$(dirname "$0")/.."
dir=$(realpath "${1:-../shared/corpus/examples}")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# The image's binary (a static PIE: scripts/release-build), what ships.
bin=$(scripts/release-build | tail -n 1)
(cd "$work" && npm init -y >/dev/null && npm install --silent --no-audit --no-fund @asyncapi/parser@3.6.3 >/dev/null)
files=$(find "$dir" -type f \( -name '*.yaml' -o -name '*.yml' -o -name '*.json' \) | wc -l)

cat > "$work/parse.mjs" <<'JS'
import { Parser } from '@asyncapi/parser';
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
const dir = process.argv[2];
const files = [];
const walk = (d) => { for (const f of readdirSync(d)) { const p = join(d, f); if (statSync(p).isDirectory()) walk(p); else if (/\.(ya?ml|json)$/.test(f)) files.push(p); } };
walk(dir);
const texts = files.map((f) => readFileSync(f, 'utf8'));
const parser = new Parser();
let best = Infinity;
for (let round = 0; round < 6; round++) {
  const start = process.hrtime.bigint();
  for (const text of texts) await parser.parse(text);
  const ms = Number(process.hrtime.bigint() - start) / 1e6;
  if (round > 0) best = Math.min(best, ms); // the first round warms the JIT up
}
console.log(best.toFixed(1));
JS
parser_ms=$(cd "$work" && node parse.mjs "$dir")

best=999999
for _ in 1 2 3 4 5; do
  start=$(date +%s%N)
  "$bin" check "$dir" >/dev/null || true
  end=$(date +%s%N)
  ms=$(( (end - start) / 1000 ))
  [ "$ms" -lt "$best" ] && best=$ms
done
check_ms=$(python3 -c "print(f'{$best / 1000:.2f}')")
ratio=$(python3 -c "print(f'{$parser_ms / ($best / 1000):.0f}')")
echo "files: $files"
echo "@asyncapi/parser 3.6.3 parse (warm, best of 5): ${parser_ms} ms"
echo "asyncapi-guard check, whole process (best of 5): ${check_ms} ms"
echo "asyncapi-guard is ${ratio} times faster"
