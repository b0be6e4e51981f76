#!/usr/bin/env bash
# make demo: the main job for a person to watch. Filled in by the demo issue.
set -eu
build=${1:-build}
"$build/wg-dynamic-server" --version
"$build/wg-dynamic-client" --version
echo "The demo lab (server and two clients over wireguard-go) arrives with the server and client."
