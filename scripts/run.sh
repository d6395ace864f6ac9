#!/usr/bin/env bash
# Set up this Debian host (packages, the Python package, dockerd, cron) and run
# the rulectl daemon in the foreground on the repository's own config.yaml and
# rules/. Ctrl-C stops it: the cron entry and the test containers it started
# are removed. Extra arguments go to `rulectl run` (for example --once).
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$repo_root/scripts/setup-host.sh"
exec python3 -m rulectl run --config "$repo_root/config.yaml" "$@"
