#!/usr/bin/env bash
# Makes sure the Debian packages some tests need are installed: chromium for the browser tests
# (test/dashboard.test.ts, test/browser-worker.test.ts) and docker-compose for `docker-compose config` in
# test/container.test.ts (no Docker engine is needed for that). Idempotent: quiet and successful when both are
# there, one `apt-get update` otherwise. Installing needs root; without it this only says so, and those tests
# then explain what is missing (and fail under CI=true).
set -euo pipefail
missing=()
[ -x /usr/bin/chromium ] || missing+=(chromium)
command -v docker-compose >/dev/null 2>&1 || missing+=(docker-compose)
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "ensure-test-tools: ${missing[*]} missing and this is not root: skipping the install (apt-get install ${missing[*]} as root to run the tests that need them)" >&2
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "ensure-test-tools: ${missing[*]} missing and there is no apt-get here: install them by hand to run the tests that need them" >&2
  exit 0
fi
echo "ensure-test-tools: installing Debian's ${missing[*]} for the tests" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
[ -x /usr/bin/chromium ] || { echo "ensure-test-tools: the install finished but /usr/bin/chromium is still missing" >&2; exit 1; }
command -v docker-compose >/dev/null 2>&1 || { echo "ensure-test-tools: the install finished but docker-compose is still missing" >&2; exit 1; }
