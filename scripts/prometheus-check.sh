#!/usr/bin/env bash
# Proves the Prometheus exposition with a REAL Prometheus: starts a router with an embedded simulated
# fleet and a Prometheus server scraping it every second (both on loopback, free ports, a temp folder),
# sends traffic, then asks Prometheus' HTTP API for the router's series and checks their values.
#
#   bash scripts/prometheus-check.sh            (installs Debian's prometheus when missing)
#   SWITCHYARD_PROMETHEUS_NO_INSTALL=1 ...      fail instead of installing
#   SWITCHYARD_PROMETHEUS_KEEP=1 ...            keep the temp folder (config, TSDB, logs)
#
# Needs the build (npm run build). Exit 0 when every check passed; 1 on a failed check; 2 when it
# cannot run (no prometheus, no build).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

if ! command -v prometheus >/dev/null 2>&1; then
  if [ "${SWITCHYARD_PROMETHEUS_NO_INSTALL:-}" = 1 ]; then echo "prometheus is not installed" >&2; exit 2; fi
  bash "$root/scripts/install-system-deps.sh" --also prometheus || { echo "could not install prometheus" >&2; exit 2; }
fi
[ -f "$root/dist/src/cli/main.js" ] || { echo "not built: run npm run build first" >&2; exit 2; }

tmp="$(mktemp -d "${TMPDIR:-/tmp}/switchyard-prom-XXXXXX")"
pids=()
cleanup() {
  for p in ${pids[@]+"${pids[@]}"}; do kill "$p" 2>/dev/null || true; done
  for p in ${pids[@]+"${pids[@]}"}; do wait "$p" 2>/dev/null || true; done
  if [ "${SWITCHYARD_PROMETHEUS_KEEP:-}" = 1 ]; then echo "kept $tmp"; else rm -rf "$tmp"; fi
}
trap cleanup EXIT

free_port() {
  node -e "const s=require('net').createServer().listen(0,'127.0.0.1',()=>{console.log(s.address().port);s.close()})"
}
router_port=$(free_port)
metrics_port=$(free_port)
prom_port=$(free_port)
while [ "$metrics_port" = "$router_port" ]; do metrics_port=$(free_port); done
while [ "$prom_port" = "$router_port" ] || [ "$prom_port" = "$metrics_port" ]; do prom_port=$(free_port); done

# wait_http URL SECONDS: until URL answers 200
wait_http() {
  node -e '
    const [url, secs] = process.argv.slice(1);
    const deadline = Date.now() + Number(secs) * 1000;
    (async () => {
      for (;;) {
        try { const r = await fetch(url); if (r.status === 200) return; } catch {}
        if (Date.now() > deadline) { console.error(`timed out waiting for ${url}`); process.exit(1); }
        await new Promise((r) => setTimeout(r, 200));
      }
    })();' "$1" "$2"
}

echo "== router on 127.0.0.1:$router_port, metrics on 127.0.0.1:$metrics_port"
node bin/switchyard.js serve --host 127.0.0.1 --port "$router_port" \
  --prometheus-host 127.0.0.1 --prometheus-port "$metrics_port" \
  --policy round_robin --sim-workers 2 --sim-base-port 0 --sim-time-scale 0.02 \
  --health-check-interval-secs 1 --log-level warn >"$tmp/router.log" 2>&1 &
pids+=($!)
wait_http "http://127.0.0.1:$router_port/readiness" 60 || { cat "$tmp/router.log" >&2; exit 1; }

cat >"$tmp/prometheus.yml" <<EOF
global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: switchyard
    static_configs:
      - targets: ['127.0.0.1:$metrics_port']
EOF
echo "== prometheus $(prometheus --version 2>&1 | head -n1 | awk '{print $3}') on 127.0.0.1:$prom_port (config $tmp/prometheus.yml)"
prometheus --config.file="$tmp/prometheus.yml" --storage.tsdb.path="$tmp/data" \
  --web.listen-address="127.0.0.1:$prom_port" --log.level=warn >"$tmp/prometheus.log" 2>&1 &
pids+=($!)
wait_http "http://127.0.0.1:$prom_port/-/ready" 60 || { cat "$tmp/prometheus.log" >&2; exit 1; }

echo "== traffic: 20 x /generate (non-streaming), 10 x /v1/chat/completions (streaming)"
ROUTER="http://127.0.0.1:$router_port" PROM="http://127.0.0.1:$prom_port" node --input-type=module -e '
const router = process.env.ROUTER;
const prom = process.env.PROM;
const post = async (path, body) => {
  const r = await fetch(router + path, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
  await r.text();
  if (r.status !== 200) throw new Error(`${path}: HTTP ${r.status}`);
};
for (let i = 0; i < 20; i++) await post("/generate", { text: `prometheus check ${i}`, sampling_params: { max_new_tokens: 8 } });
for (let i = 0; i < 10; i++) await post("/v1/chat/completions", { messages: [{ role: "user", content: `hello ${i}` }], stream: true, max_tokens: 8 });

const query = async (q) => {
  const r = await fetch(`${prom}/api/v1/query?query=${encodeURIComponent(q)}`);
  const body = await r.json();
  if (body.status !== "success") throw new Error(`${q}: ${JSON.stringify(body)}`);
  return body.data.result;
};
const scalar = async (q) => {
  const res = await query(q);
  return res.length === 0 ? undefined : Number(res[0].value[1]);
};
// Wait for a scrape that saw all the traffic (scrape interval 1 s). Requests are counted when they
// arrive, their latencies when they finish: wait for the histograms, which come last.
const settled = "sum(sgl_router_request_duration_seconds_count) + sum(sgl_router_ttft_seconds_count)";
const deadline = Date.now() + 60_000;
while ((await scalar(settled)) !== 40) {
  if (Date.now() > deadline) throw new Error(`Prometheus never saw the 30 requests finish (${settled} = ${await scalar(settled)})`);
  await new Promise((r) => setTimeout(r, 250));
}
const checks = [
  ["up{job=\"switchyard\"}", (v) => v === 1],
  ["sgl_router_requests_total{route=\"/generate\"}", (v) => v === 20],
  ["sgl_router_requests_total{route=\"/v1/chat/completions\"}", (v) => v === 10],
  ["sum(sgl_router_processed_requests_total)", (v) => v === 30],
  ["sum(sgl_router_policy_decisions_total{policy=\"round_robin\"})", (v) => v === 30],
  ["count(sgl_router_worker_health == 1)", (v) => v === 2],
  ["sgl_router_active_workers", (v) => v === 2],
  ["sgl_router_cache_hits_total", (v) => v === 0],
  ["sum(sgl_router_request_duration_seconds_count)", (v) => v === 30],
  ["sum(sgl_router_ttft_seconds_count)", (v) => v === 10],
  ["sum(sgl_router_inter_token_latency_seconds_count)", (v) => v > 0],
  ["histogram_quantile(0.5, sum by (le) (sgl_router_ttft_seconds_bucket))", (v) => v > 0 && Number.isFinite(v)],
  ["count(count by (gpu) (sgl_router_ttft_seconds_count))", (v) => v === 2],
  ["count(sgl_router_admission_total)", (v) => v >= 4],
];
let failed = 0;
for (const [q, ok] of checks) {
  const v = await scalar(q);
  const pass = v !== undefined && ok(v);
  if (!pass) failed++;
  console.log(`${pass ? "ok  " : "FAIL"} ${q} = ${v}`);
}
const targets = await (await fetch(`${prom}/api/v1/targets`)).json();
const t = targets.data.activeTargets[0];
console.log(`${t.health === "up" && t.lastError === "" ? "ok  " : "FAIL"} target ${t.scrapeUrl}: health=${t.health} lastError="${t.lastError}"`);
if (t.health !== "up" || t.lastError !== "") failed++;
if (failed > 0) { console.log(`prometheus check: ${failed} check(s) failed`); process.exit(1); }
console.log(`prometheus check: all ${checks.length + 1} checks passed`);
' || { echo "--- router log"; tail -n 20 "$tmp/router.log"; echo "--- prometheus log"; tail -n 20 "$tmp/prometheus.log"; exit 1; }
