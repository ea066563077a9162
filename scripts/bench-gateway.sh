#!/usr/bin/env bash
# The gateway's hot path (issue 18), measured side by side in one run:
#   direct   oha → the fixed-reply upstream (what the upstream itself costs)
#   nginx    oha → nginx (Debian, plain reverse proxy, keep-alive upstream) → upstream
#   desk     oha → Sparklio Desk POST /api/v1/llm/generate (live, Ollama provider) → upstream
#   vllm     (with VLLM_ROUTER=1) oha → vLLM Router POST /v1/chat/completions → upstream
# Non-streaming requests at c=1 (latency; overhead = target minus direct) and c=64
# (requests/s), medians of ROUNDS rounds, plus CPU per request (/proc/<pid>/stat
# deltas of the target's own processes), RSS (peak and now), and the Desk's usage log
# (rows written vs requests answered, dropped rows). Everything on 127.0.0.1.
#
# The upstream is `sparklio-testkit fixed`, answering the reply the Ollama double gives
# to the exact request the Desk sends (recorded at start), so all three targets see the
# same upstream bytes. nginx is sent that same upstream request.
#
# Usage: scripts/bench-gateway.sh [--rounds N] [--requests N] [--duration S] [--soak S]
#                                  [--instructions N] [--no-build]
#   --requests  requests per c=1 series (default 5000)
#   --duration  seconds per c=64 series (default 10)
#   --soak S    afterwards, S seconds at c=64 against the Desk, RSS sampled every 10 s
#               (the 10-minute soak: --soak 600)
#   --instructions N  instead of timing: user-space instructions per request of nginx
#               (one worker) and the Desk under valgrind's callgrind, N requests at c=1
#               after 300 to warm up. Nearly deterministic (within 1.5 % between runs), so it
#               shows a change too small for this machine's timing noise. Needs valgrind.
# MAX_QUEUE=n   the Desk's llm.providers.ollama.resilience.max_queue (default: the
#               product's, 64; a build from before the storm fix needs e.g. 1024, see
#               docs/performance.md)
# MAX_CONCURRENT=n the Desk's llm.providers.ollama.resilience.max_concurrent (default: the
#               product's, 8 calls at once per instance, sized for a GPU; nginx has no
#               such limit, and 64 lets all 64 clients' calls through at once as nginx does;
#               0 = no limit)
# PROFILE=name  the cargo profile built and measured (default dist, what ships; release is
#               the quicker build of `cargo run --release`).
# DESK_BIN=path measures another build of the Desk (e.g. the one before a change).
# DESK_ENV="VAR=value ..." extra environment for the Desk only (e.g. TOKIO_WORKER_THREADS=1).
# NGINX_KEEPALIVE=0 nginx as proxy_pass does by default: a new upstream connection per
#               request (default 1: keep-alive connections to the upstream, the faster floor).
# NGINX_ACCESS_LOG=1 nginx writes its access log (Debian's default: the combined format,
#               one write per request), as the Desk writes a usage row per request
#               (default 0: access_log off, the faster floor).
# VLLM_ROUTER=1 adds vLLM Router 0.1.17 (Rust, axum; the issue's fastest other gateway) as a
#               fourth target, sent the same messages as an OpenAI chat request, its upstream
#               answering them in OpenAI's format. Installed on first use with pip into
#               VLLM_ROUTER_VENV (default ~/.cache/sparklio-bench/vllm-router-0.1.17, ~130 MB).
# DASHBOARD=1   a dashboard stays open on the Desk for the whole run (its live stream,
#               /api/v1/stream: a snapshot with the last five minutes' figures every 2 s),
#               as when the owner watches the tray window during load.
# Needs: oha (cargo install oha --locked), nginx (apt-get install -y nginx), python3;
#        valgrind for --instructions (apt-get install -y valgrind).
# Not part of .ci/run (minutes long and sensitive to machine load): run by hand.
set -euo pipefail

ROUNDS=2
REQUESTS=5000
DURATION=10
SOAK=0
INSTRUCTIONS=0
BUILD=1
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) ROUNDS=$2; shift 2 ;;
    --requests) REQUESTS=$2; shift 2 ;;
    --duration) DURATION=$2; shift 2 ;;
    --soak) SOAK=$2; shift 2 ;;
    --instructions) INSTRUCTIONS=$2; shift 2 ;;
    --no-build) BUILD=0; shift ;;
    -h|--help) sed -n '2,/^set -euo/{/^#/p}' "$0"; exit 0 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done

root=$(cd "$(dirname "$0")/.." && pwd)
target_dir=${CARGO_TARGET_DIR:-$root/target}
command -v oha >/dev/null || { echo "oha missing: cargo install oha --locked" >&2; exit 1; }
# oha flags: JSON output (1.5+: --output-format json; older: -j). The help is read
# whole first: grep -q stopping early would make oha fail on a closed pipe (pipefail).
oha_help=$(oha --help)
if grep -q -- '--output-format' <<<"$oha_help"; then OHA_JSON=(--output-format json); else OHA_JSON=(-j); fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
[ -x "$NGINX" ] || { echo "nginx missing: apt-get install -y nginx" >&2; exit 1; }
targets=(direct nginx desk)
# vLLM Router is timed only (--instructions counts nginx and the Desk).
WITH_VLLM=0
if [ "${VLLM_ROUTER:-0}" = 1 ] && [ "$INSTRUCTIONS" -eq 0 ]; then WITH_VLLM=1; fi
if [ "$WITH_VLLM" = 1 ]; then
  VLLM_ROUTER_VENV=${VLLM_ROUTER_VENV:-$HOME/.cache/sparklio-bench/vllm-router-0.1.17}
  if [ ! -x "$VLLM_ROUTER_VENV/bin/vllm-router" ]; then
    echo "installing vllm-router 0.1.17 into $VLLM_ROUTER_VENV"
    python3 -m venv "$VLLM_ROUTER_VENV"
    "$VLLM_ROUTER_VENV/bin/pip" install -q vllm-router==0.1.17
  fi
  targets+=(vllm)
fi
# The shipped build (the dist profile: fat LTO, one codegen unit); PROFILE=release for the
# quicker one.
PROFILE=${PROFILE:-dist}
if [ "$BUILD" = 1 ]; then
  (cd "$root" && cargo build --profile "$PROFILE" -q -p sparklio-desk -p sparklio-testkit)
fi
profile_dir=$target_dir/$([ "$PROFILE" = dev ] && echo debug || echo "$PROFILE")
DESK=${DESK_BIN:-$profile_dir/sparklio-desk}
KIT=$profile_dir/sparklio-testkit

work=$(mktemp -d /tmp/bench-gateway.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  # (nginx may remove its pid file between the test and the read.)
  [ -f "$work/nginx.pid" ] && kill "$(cat "$work/nginx.pid" 2>/dev/null)" 2>/dev/null || true
  wait 2>/dev/null || true
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() {
  for _ in $(seq 200); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.05
  done
  echo "nothing listens on $1" >&2; return 1
}

# The default config (the instance's limits only if MAX_QUEUE / MAX_CONCURRENT are given).
desk_config() { # port upstream-url data-dir
  cat <<EOF
[server]
bind = "127.0.0.1:$1"
[storage]
data_dir = "$3"
[llm.providers.ollama]
base_url = "$2"
EOF
  if [ -n "${MAX_QUEUE:-}${MAX_CONCURRENT:-}" ]; then
    echo '[llm.providers.ollama.resilience]'
    if [ -n "${MAX_QUEUE:-}" ]; then echo "max_queue = $MAX_QUEUE"; fi
    if [ -n "${MAX_CONCURRENT:-}" ]; then echo "max_concurrent = $MAX_CONCURRENT"; fi
  fi
}

gateway_body='{"role":"copywriter","task":"product_detail","payload":{"product_name":"프로틴플러스 초코맛","features":["30g 단백질","저당"]}}'
echo "$gateway_body" > "$work/gateway.json"

# 1. Record the upstream request the Desk sends and the double's replies.
dbl_port=$(free_port); ctl_port=$(free_port); rec_port=$(free_port)
"$KIT" ollama --port "$dbl_port" --control-port "$ctl_port" > "$work/double.log" 2>&1 &
dbl_pid=$!; pids+=("$dbl_pid")
wait_port "$dbl_port"; wait_port "$ctl_port"
desk_config "$rec_port" "http://127.0.0.1:$dbl_port" "$work/record-data" > "$work/record.toml"
GENERATOR_MODE=live "$DESK" --config "$work/record.toml" serve > "$work/record.log" 2>&1 &
rec_pid=$!; pids+=("$rec_pid")
wait_port "$rec_port"
curl -sf -o /dev/null -H 'content-type: application/json' --data-binary @"$work/gateway.json" \
  "http://127.0.0.1:$rec_port/api/v1/llm/generate"
curl -sf "http://127.0.0.1:$ctl_port/requests" | python3 -c '
import json, sys
reqs = [r for r in json.load(sys.stdin) if r["path"] == "/api/chat" and r["body"].get("messages")]
json.dump(reqs[-1]["body"], open(sys.argv[1], "w"), ensure_ascii=False)
' "$work/upstream.json"
curl -sf -H 'content-type: application/json' --data-binary @"$work/upstream.json" \
  "http://127.0.0.1:$dbl_port/api/chat" > "$work/chat.ndjson"
for p in tags version ps; do curl -sf "http://127.0.0.1:$dbl_port/api/$p" > "$work/$p.json"; done
# The same call in OpenAI's format, for vLLM Router: the Desk's messages and options, and
# the double's answer (its content and token counts) as one chat completion.
python3 - "$work" <<'PY'
import json, sys
work = sys.argv[1]
up = json.load(open(f"{work}/upstream.json"))
opts = up.get("options", {})
request = {"model": up["model"], "messages": up["messages"], "stream": False,
           "temperature": opts.get("temperature", 0.8), "top_p": opts.get("top_p", 1.0),
           "max_tokens": opts.get("num_predict", 2000)}
if up.get("format") == "json":
    request["response_format"] = {"type": "json_object"}
json.dump(request, open(f"{work}/openai-request.json", "w"), ensure_ascii=False)
lines = [json.loads(l) for l in open(f"{work}/chat.ndjson") if l.strip()]
content = "".join(l.get("message", {}).get("content", "") for l in lines)
done = lines[-1]
usage = {"prompt_tokens": done.get("prompt_eval_count", 0), "completion_tokens": done.get("eval_count", 0)}
usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
reply = {"id": "chatcmpl-bench", "object": "chat.completion", "created": 1763287200, "model": up["model"],
         "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
         "usage": usage}
json.dump(reply, open(f"{work}/chat-completion.json", "w"))
json.dump({"object": "list", "data": [{"id": up["model"], "object": "model", "created": 0, "owned_by": "bench"}]},
          open(f"{work}/models.json", "w"))
PY
kill "$rec_pid" "$dbl_pid"; wait "$rec_pid" "$dbl_pid" 2>/dev/null || true

# 2. The fixed-reply upstream, nginx in front of it, the Desk in front of it.
up_port=$(free_port); ng_port=$(free_port); desk_port=$(free_port)
"$KIT" fixed --port "$up_port" --reply "/api/chat=$work/chat.ndjson" \
  --reply "/api/tags=$work/tags.json" --reply "/api/version=$work/version.json" \
  --reply "/api/ps=$work/ps.json" --reply "/v1/chat/completions=$work/chat-completion.json" \
  --reply "/v1/models=$work/models.json" --reply "/health=$work/version.json" \
  > "$work/upstream.log" 2>&1 &
up_pid=$!; pids+=("$up_pid")
wait_port "$up_port"

# nginx_conf FILE ONE: nginx as a plain reverse proxy in front of the upstream, in the
# foreground; ONE=1 runs one worker without a master (for callgrind).
nginx_conf() {
  mkdir -p "$work/nginx"
  local procs='worker_processes auto;'
  if [ "$2" = 1 ]; then procs=$'worker_processes 1;\nmaster_process off;'; fi
  cat > "$1" <<EOF
$procs
daemon off;
pid $work/nginx.pid;
error_log $work/nginx/error.log warn;
events { worker_connections 4096; }
http {
  access_log $( [ "${NGINX_ACCESS_LOG:-0}" = 1 ] && echo "$work/nginx/access.log" || echo off);
  client_body_temp_path $work/nginx/body;
  proxy_temp_path $work/nginx/proxy;
  fastcgi_temp_path $work/nginx/fastcgi;
  uwsgi_temp_path $work/nginx/uwsgi;
  scgi_temp_path $work/nginx/scgi;
  upstream fixed { server 127.0.0.1:$up_port;$( [ "${NGINX_KEEPALIVE:-1}" = 1 ] && echo ' keepalive 128;') }
  server {
    listen 127.0.0.1:$ng_port;
    location / {
      proxy_pass http://fixed;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
}
EOF
}

if [ "$INSTRUCTIONS" -gt 0 ]; then
  command -v valgrind >/dev/null || { echo "valgrind missing: apt-get install -y valgrind" >&2; exit 1; }
  # count NAME PORT URL BODY COMMAND...: run COMMAND under callgrind, zero the counts
  # after the warm-up, dump them after N requests: instructions per request.
  count() {
    local name=$1 port=$2 url=$3 body=$4; shift 4
    # The environment goes to valgrind itself: it does not follow an exec (`env …`).
    env ${COUNT_ENV:-} valgrind --tool=callgrind --callgrind-out-file="$work/callgrind.$name.%p" \
      "$@" > "$work/callgrind-$name.log" 2>&1 &
    local pid=$!; pids+=("$pid")
    for _ in $(seq 600); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
    oha --no-tui -n 300 -c 1 -m POST -H 'content-type: application/json' -D "$body" "$url" > /dev/null
    callgrind_control -z "$pid" > /dev/null 2>&1
    oha --no-tui "${OHA_JSON[@]}" -n "$INSTRUCTIONS" -c 1 -m POST -H 'content-type: application/json' \
      -D "$body" "$url" > "$work/oha-$name.json"
    callgrind_control -d "$pid" > /dev/null 2>&1
    sleep 1
    kill "$pid"; wait "$pid" 2>/dev/null || true
    if ! compgen -G "$work/callgrind.$name.*.1" > /dev/null; then
      echo "  $name: callgrind wrote no counts, see $work/callgrind-$name.log" >&2
      return 1
    fi
    python3 - "$name" "$INSTRUCTIONS" "$work/oha-$name.json" "$work"/callgrind."$name".*.1 <<'PY'
import json, sys
name, n, oha, dumps = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4:]
codes = json.load(open(oha)).get("statusCodeDistribution", {})
total = 0
for f in dumps:
    for line in open(f):
        if line.startswith("summary:"):
            total += int(line.split()[1])
print(f"  {name:6s} {total / n:10,.0f} instructions per request  ({n} requests: {codes})")
PY
  }
  nginx_conf "$work/nginx-one.conf" 1
  echo "user-space instructions per request (valgrind's callgrind; the kernel's work is not counted)"
  count nginx "$ng_port" "http://127.0.0.1:$ng_port/api/chat" "$work/upstream.json" \
    "$NGINX" -c "$work/nginx-one.conf"
  desk_config "$desk_port" "http://127.0.0.1:$up_port" "$work/desk-data" > "$work/desk.toml"
  # The busy poll's spinning would be counted as work done for the requests.
  printf '[server.limits]\nbusy_poll_us = 0\n' >> "$work/desk.toml"
  COUNT_ENV="${DESK_ENV:-} GENERATOR_MODE=live" \
    count desk "$desk_port" "http://127.0.0.1:$desk_port/api/v1/llm/generate" "$work/gateway.json" \
    "$DESK" --config "$work/desk.toml" serve
  exit 0
fi

nginx_conf "$work/nginx.conf" 0
"$NGINX" -c "$work/nginx.conf" > "$work/nginx.log" 2>&1 &
ng_pid=$!; pids+=("$ng_pid")
wait_port "$ng_port"

desk_config "$desk_port" "http://127.0.0.1:$up_port" "$work/desk-data" > "$work/desk.toml"
env ${DESK_ENV:-} GENERATOR_MODE=live "$DESK" --config "$work/desk.toml" serve > "$work/desk.log" 2>&1 &
desk_pid=$!; pids+=("$desk_pid")
wait_port "$desk_port"
if [ "$WITH_VLLM" = 1 ]; then
  vllm_port=$(free_port)
  # Its defaults otherwise (the cache-aware policy, info logs, its own limits).
  "$VLLM_ROUTER_VENV/bin/vllm-router" --host 127.0.0.1 --port "$vllm_port" \
    --worker-urls "http://127.0.0.1:$up_port" > "$work/vllm-router.log" 2>&1 &
  vllm_pid=$!; pids+=("$vllm_pid")
  wait_port "$vllm_port"
fi
if [ "${DASHBOARD:-0}" = 1 ]; then
  curl -sN "http://127.0.0.1:$desk_port/api/v1/stream" > "$work/dashboard.sse" 2>&1 &
  pids+=("$!")
fi

# A target: name, URL, body file, pids to account (nginx: master and workers).
url_direct="http://127.0.0.1:$up_port/api/chat"
url_nginx="http://127.0.0.1:$ng_port/api/chat"
url_desk="http://127.0.0.1:$desk_port/api/v1/llm/generate"
url_vllm="http://127.0.0.1:${vllm_port:-0}/v1/chat/completions"
body_direct=$work/upstream.json; body_nginx=$work/upstream.json; body_desk=$work/gateway.json
body_vllm=$work/openai-request.json
procs() {
  case "$1" in
    direct) echo "$up_pid" ;;
    nginx) echo "$ng_pid $(pgrep -P "$ng_pid" | tr '\n' ' ')" ;;
    desk) echo "$desk_pid" ;;
    vllm) echo "$vllm_pid $(pgrep -P "$vllm_pid" | tr '\n' ' ')" ;;
  esac
}
ticks() { local t=0; for p in $(procs "$1"); do t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat"))); done; echo "$t"; }
rss_kb() { local k=0; for p in $(procs "$1"); do k=$((k + $(awk "/^$2:/ {print \$2}" "/proc/$p/status"))); done; echo "$k"; }

# run TARGET CONCURRENCY -> appends "target c p50_ms p99_ms rps cpu_ms_per_req ok" to results
run() {
  local t=$1 c=$2 url body size
  url=$(eval echo "\$url_$t"); body=$(eval echo "\$body_$t")
  if [ "$c" = 1 ]; then size=(-n "$REQUESTS"); else size=(-z "${DURATION}s"); fi
  local before after
  before=$(ticks "$t")
  oha --no-tui "${OHA_JSON[@]}" "${size[@]}" -c "$c" -m POST -H 'content-type: application/json' \
    -D "$body" "$url" > "$work/oha.json"
  after=$(ticks "$t")
  python3 - "$t" "$c" "$((after - before))" "$(getconf CLK_TCK)" "$work/oha.json" >> "$work/results" <<'PY'
import json, sys
t, c, ticks, hz = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
d = json.load(open(sys.argv[5]))
codes = d.get("statusCodeDistribution", {})
ok = int(codes.get("200", 0))
total = sum(int(v) for v in codes.values())
p = d["latencyPercentiles"]
cpu = ticks * 1000.0 / hz / max(total, 1)
# Requests/s counts answers with status 200 only (a shed request is not served).
print(t, c, p["p50"] * 1000, p["p99"] * 1000, d["summary"]["requestsPerSec"] * ok / max(total, 1), cpu, ok, total)
PY
  [ "$t" = desk ] && desk_total=$((desk_total + $(awk 'END {print $8}' "$work/results")))
  tail -1 "$work/results" | awk '{printf "  %-6s c=%-3s p50 %.3f ms  p99 %.3f ms  %8.0f req/s  cpu %.3f ms/req  %s/%s ok\n", $1, $2, $3, $4, $5, $6, $7, $8}'
}

echo "load before: $(cut -d' ' -f1-3 /proc/loadavg) ($(nproc) CPUs), $(oha --version), $("$NGINX" -v 2>&1)"
for t in "${targets[@]}"; do # warm-up
  oha --no-tui "${OHA_JSON[@]}" -n 2000 -c 16 -m POST -H 'content-type: application/json' \
    -D "$(eval echo "\$body_$t")" "$(eval echo "\$url_$t")" > "$work/warmup-$t.json"
done
# Responses the Desk gave (any status): each must leave one usage row.
desk_answers() { python3 -c 'import json,sys; print(sum(int(v) for v in json.load(open(sys.argv[1])).get("statusCodeDistribution", {}).values()))' "$1"; }
desk_total=$(desk_answers "$work/warmup-desk.json")
: > "$work/results"
for r in $(seq "$ROUNDS"); do
  echo "round $r"
  for c in 1 64; do
    for t in "${targets[@]}"; do run "$t" "$c"; done
  done
done

memory=()
for t in "${targets[@]}"; do
  memory+=("$t" "$(rss_kb "$t" VmHWM)" "$(rss_kb "$t" VmRSS)" "$(rss_kb "$t" RssAnon)")
done

echo
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
python3 - "$work/results" "${memory[@]}" <<'PY'
import sys, statistics as st
rows = [l.split() for l in open(sys.argv[1])]
# target, peak, now, anonymous (kB), four at a time
m = sys.argv[2:]
peak, now, anon = ({m[i]: int(m[i + k]) for i in range(0, len(m), 4)} for k in (1, 2, 3))
def med(t, c, i):
    return st.median(float(r[i]) for r in rows if r[0] == t and int(r[1]) == c)
base50, base99 = med("direct", 1, 2), med("direct", 1, 3)
print("| target | overhead p50 / p99 at c=1 | requests/s at c=64 | RSS peak / after (anonymous) | CPU per request (c=64) |")
print("|---|---|---|---|---|")
names = [("direct", "fixed-reply upstream alone"), ("nginx", "nginx reverse proxy"),
         ("desk", "Sparklio Desk /api/v1/llm/generate"), ("vllm", "vLLM Router 0.1.17 /v1/chat/completions")]
for t, name in names:
    if t not in peak:
        continue
    if t == "direct":
        lat = f"{base50:.3f} / {base99:.3f} ms (latency itself)"
    else:
        lat = f"{med(t, 1, 2) - base50:.3f} / {med(t, 1, 3) - base99:.3f} ms"
    print(f"| {name} | {lat} | {med(t, 64, 4):,.0f} | {peak[t] / 1024:.0f} / {now[t] / 1024:.0f} ({anon[t] / 1024:.0f}) MB | {med(t, 64, 5):.3f} ms |")
ratio = med("desk", 64, 4) / med("nginx", 64, 4)
print(f"\nDesk / nginx requests/s at c=64: {ratio:.2f}")
if "vllm" in peak:
    print(f"Desk / vLLM Router requests/s at c=64: {med('desk', 64, 4) / med('vllm', 64, 4):.2f}")
PY

# What the dashboard asks every 2 s: the last five minutes' figures.
summary_s=$(curl -s -o "$work/summary.json" -w '%{time_total}' "http://127.0.0.1:$desk_port/api/v1/usage/summary?window_s=300")
echo "usage summary of the last 5 minutes: $(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["summary"]["requests"])' "$work/summary.json") requests, answered in $(python3 -c "print(round($summary_s * 1000, 1))") ms"
[ "${DASHBOARD:-0}" = 1 ] && echo "dashboard snapshots received: $(grep -c '^event: snapshot' "$work/dashboard.sse" || true)"

if [ "$SOAK" -gt 0 ]; then
  echo
  echo "soak: ${SOAK}s at c=64 against the Desk, RSS every 10 s (MB)"
  oha --no-tui "${OHA_JSON[@]}" -z "${SOAK}s" -c 64 -m POST -H 'content-type: application/json' \
    -D "$body_desk" "$url_desk" > "$work/soak.json" &
  soak_pid=$!
  samples=(); anons=(); loads=()
  while kill -0 "$soak_pid" 2>/dev/null; do
    samples+=("$(( $(rss_kb desk VmRSS) / 1024 ))")
    anons+=("$(( $(rss_kb desk RssAnon) / 1024 ))")
    loads+=("$(cut -d' ' -f1 /proc/loadavg)")
    sleep 10
  done
  wait "$soak_pid"
  echo "  RSS:       ${samples[*]}"
  echo "  anonymous: ${anons[*]}"
  echo "  load (1 min): ${loads[*]}"
  python3 - "$work/soak.json" "${samples[@]}" <<'PY'
import json, sys
s = [int(x) for x in sys.argv[2:]]
d = json.load(open(sys.argv[1]))
print(f"  first {s[0]} MB, last {s[-1]} MB, max {max(s)} MB over {len(s)} samples;"
      f" {d['summary']['requestsPerSec']:,.0f} answers/s, p99 {d['latencyPercentiles']['p99'] * 1000:.2f} ms,"
      f" status codes {d.get('statusCodeDistribution')}")
PY
  desk_total=$((desk_total + $(desk_answers "$work/soak.json")))
fi

# The usage log: SIGTERM the Desk (a clean stop writes out the queue), then count rows.
dropped=$(curl -sf "http://127.0.0.1:$desk_port/metrics" | awk '/^usage_rows_dropped_total/ {print $2}')
kill -TERM "$desk_pid"; wait "$desk_pid" 2>/dev/null || true
rows=$(sqlite3 "$work/desk-data/sparklio-desk.db" 'SELECT COUNT(*) FROM usage')
echo "Desk usage log: $desk_total responses, $rows rows after SIGTERM, dropped rows: ${dropped:-?}"
echo "(work folder: $work)"
