#!/usr/bin/env bash
# Install the benchmark's client and peer servers (python -m bench). Idempotent: installed
# packages are left alone, and apt's package lists are refreshed only when something is missing.
#
#   tools/install-peers.sh            # Debian packages (as root) + PyPI packages
#   PIP="python3 -m pip" tools/install-peers.sh
#
# Debian: nghttp2-client (h2load), nginx-light, h2o, caddy, openssl, curl.
# PyPI: hypercorn, granian, uvicorn, zttp (uvicorn's --http zttp; optional), matplotlib (chart).
set -euo pipefail

PIP=${PIP:-python3 -m pip}
DEBS=(nghttp2-client nginx-light h2o caddy openssl curl)
PYPI=(hypercorn granian uvicorn matplotlib psutil)

missing=()
for pkg in "${DEBS[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" ||
        missing+=("$pkg")
done
if ((${#missing[@]})); then
    SUDO=""
    [[ $(id -u) -eq 0 ]] || SUDO="sudo"
    echo "apt: installing ${missing[*]}"
    $SUDO apt-get update -qq
    # The packaged services are not wanted running: the harness starts its own instances.
    # policy-rc.d exit 101 tells invoke-rc.d not to start them during the install.
    policy=/usr/sbin/policy-rc.d
    made_policy=0
    if [[ ! -e $policy ]]; then
        printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null
        $SUDO chmod +x "$policy"
        made_policy=1
    fi
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}"
    if ((made_policy)); then $SUDO rm -f "$policy"; fi
else
    echo "apt: ${DEBS[*]} already installed"
fi

$PIP install -q "${PYPI[@]}"
# zttp (a Zig-core HTTP parser) may have no wheel for this platform: the harness then skips
# uvicorn-zttp with a note, so its absence must not fail the install.
if ! $PIP install -q zttp; then
    echo "zttp not installable here: uvicorn-zttp will be skipped" >&2
fi

echo "peers:"
for bin in h2load nginx h2o caddy openssl curl; do
    printf '  %-8s %s\n' "$bin" "$(command -v "$bin" || echo missing)"
done
# The versions as the interpreter that pip installed into sees them (a venv's, with PIP set).
PYTHON=python3
[[ $PIP == *" -m pip" ]] && PYTHON=${PIP% -m pip}
$PYTHON - <<'EOF'
import importlib.metadata as md
for name in ("hypercorn", "granian", "uvicorn", "zttp", "matplotlib"):
    try:
        print(f"  {name:<10} {md.version(name)}")
    except md.PackageNotFoundError:
        print(f"  {name:<10} missing")
EOF
