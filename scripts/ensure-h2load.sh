#!/usr/bin/env bash
# Make sure `h2load` is installed (for `make bench-load`): installs the
# Debian package nghttp2-client when it is missing (needs root and apt-get).
set -euo pipefail

command -v h2load >/dev/null 2>&1 && exit 0
[[ $(id -u) -eq 0 ]] || { echo "error: h2load is missing and root is required to install it" >&2; exit 1; }
command -v apt-get >/dev/null 2>&1 || { echo "error: h2load is missing; install nghttp2-client" >&2; exit 1; }
export DEBIAN_FRONTEND=noninteractive
echo "apt-get install -y nghttp2-client" >&2
apt-get update -qq >&2
apt-get install -y -qq --no-install-recommends nghttp2-client >&2
