#!/usr/bin/env bash
# Installs the Debian packages Switchyard's tests and benchmarks use, only when missing.
#   --for test   what `npm test` needs (nothing beyond Node today; kept as the one place to add it)
#   --for bench  nginx-light and wrk for the end-to-end comparison
#   --for all    both, plus prometheus for the observability integration script
set -euo pipefail
want=test
while [ $# -gt 0 ]; do
  case "$1" in
    --for) want="$2"; shift 2 ;;
    *) echo "usage: $0 [--for test|bench|all]" >&2; exit 2 ;;
  esac
done

pkgs=()
need() { # need <command> <package>
  command -v "$1" >/dev/null 2>&1 || pkgs+=("$2")
}
case "$want" in
  test) ;;
  bench) need nginx nginx-light; need wrk wrk ;;
  all) need nginx nginx-light; need wrk wrk; need prometheus prometheus ;;
  *) echo "unknown --for $want" >&2; exit 2 ;;
esac

[ ${#pkgs[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
echo "installing: ${pkgs[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null
