#!/usr/bin/env bash
# Installs the Debian packages Switchyard's tests and benchmarks use, only when missing.
#   --for test   what `npm test` needs: prometheus, for the real-Prometheus check of the metrics
#                exposition (test/metrics/prometheus-check.test.ts; ~45 s to install: apt-get update
#                ~6 s + install ~38 s, measured on this machine kind), and redis-server, for the
#                replicas-sharing-state tests (test/cluster/)
#   --for bench  nginx-light and wrk for the end-to-end comparison
#   --for all    both (prometheus, redis-server, nginx-light, wrk)
#   --also PKG   (repeatable) one more Debian package, installed when dpkg does not list it (a benchmark
#                scenario's `needs` beyond the bench set; `npm run bench` passes them)
set -euo pipefail
# nginx lives in /usr/sbin, which a non-root PATH may lack: look there too before deciding it is missing.
PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"
want=test
also=()
while [ $# -gt 0 ]; do
  case "$1" in
    --for) [ $# -ge 2 ] || { echo "--for needs a value" >&2; exit 2; }; want="$2"; shift 2 ;;
    --also) [ $# -ge 2 ] || { echo "--also needs a package name" >&2; exit 2; }; also+=("$2"); shift 2 ;;
    *) echo "usage: $0 [--for test|bench|all] [--also PKG]..." >&2; exit 2 ;;
  esac
done

pkgs=()
need() { # need <command> <package>
  command -v "$1" >/dev/null 2>&1 || pkgs+=("$2")
}
need_pkg() { # need_pkg <package>: by dpkg's record, for packages without a well-known command
  case "$1" in ''|-*|*[!a-z0-9.+-]*) echo "not a Debian package name: '$1'" >&2; exit 2 ;; esac
  dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed' || pkgs+=("$1")
}
case "$want" in
  test) need prometheus prometheus; need redis-server redis-server ;;
  bench) need nginx nginx-light; need wrk wrk ;;
  all) need nginx nginx-light; need wrk wrk; need prometheus prometheus; need redis-server redis-server ;;
  *) echo "unknown --for $want" >&2; exit 2 ;;
esac
for p in ${also[@]+"${also[@]}"}; do need_pkg "$p"; done

[ ${#pkgs[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
echo "installing: ${pkgs[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null
