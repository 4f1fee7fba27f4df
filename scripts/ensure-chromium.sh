#!/usr/bin/env bash
# Makes sure Debian's Chromium is installed for the browser tests (test/dashboard.test.ts). Idempotent: quiet and
# successful when /usr/bin/chromium is already there. Installing needs root; without it this only says so, and
# the browser test then explains what is missing (and fails under CI=true).
set -euo pipefail
if [ -x /usr/bin/chromium ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "ensure-chromium: /usr/bin/chromium is missing and this is not root: skipping the install (apt-get install chromium as root to run the browser tests)" >&2
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "ensure-chromium: /usr/bin/chromium is missing and there is no apt-get here: install Chromium by hand to run the browser tests" >&2
  exit 0
fi
echo "ensure-chromium: installing Debian's chromium for the browser tests" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends chromium >/dev/null
[ -x /usr/bin/chromium ] || { echo "ensure-chromium: the install finished but /usr/bin/chromium is still missing" >&2; exit 1; }
