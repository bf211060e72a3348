#!/usr/bin/env bash
# Make sure `podman` is installed (for `make image`): installs the Debian
# package when it is missing (needs root and apt-get).
set -euo pipefail

command -v podman >/dev/null 2>&1 && exit 0
[[ $(id -u) -eq 0 ]] || { echo "error: podman is missing and root is required to install it" >&2; exit 1; }
command -v apt-get >/dev/null 2>&1 || { echo "error: podman is missing; install it" >&2; exit 1; }
export DEBIAN_FRONTEND=noninteractive
echo "apt-get install -y podman" >&2
apt-get update -qq >&2
apt-get install -y -qq --no-install-recommends podman >&2
