#!/usr/bin/env bash
# Installs the peers that bench/dataplane compares Canton with: HAProxy and nginx from Debian.
# Idempotent: does nothing when both are already on PATH. Needed by the benchmark only, never by tests.
set -euo pipefail

if command -v haproxy >/dev/null 2>&1 && command -v nginx >/dev/null 2>&1; then
	echo "haproxy and nginx already installed"
	exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
	SUDO="sudo"
fi

export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update
$SUDO apt-get install -y --no-install-recommends haproxy nginx

# The benchmark starts its own haproxy and nginx processes with generated configurations on
# 127.0.0.1; the distribution's services are not needed. Stop them if the package started them
# (ignore failures: containers often have no init system).
$SUDO service haproxy stop >/dev/null 2>&1 || true
$SUDO service nginx stop >/dev/null 2>&1 || true

haproxy -v | head -n 1
nginx -v
