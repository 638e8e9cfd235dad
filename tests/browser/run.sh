#!/usr/bin/env bash
# The web client's tests, as .ci/run calls them: the protocol module under
# node alone, then the browser tests in headless Chromium against a real
# server. Without Chromium the browser tests are skipped with the reason,
# except under CI=true, where that is a failure.
set -euo pipefail
cd "$(dirname "$0")"

chromium=${CHROMIUM:-/usr/bin/chromium}
if ! command -v node >/dev/null; then
  if [ "${CI:-}" = true ]; then
    echo "web client tests: node is not installed, and CI=true: failing" >&2
    exit 1
  fi
  echo "web client tests skipped: node is not installed"
  exit 0
fi

node --test protocol.test.mjs

if [ ! -x "$chromium" ]; then
  if [ "${CI:-}" = true ]; then
    echo "browser tests: no Chromium at $chromium, and CI=true: failing" >&2
    exit 1
  fi
  echo "browser tests skipped: no Chromium at $chromium (apt-get install chromium)"
  exit 0
fi

# Built every time (a no-op when fresh): a stale binary would test old code.
if [ -z "${NATTER_BIN:-}" ]; then
  (cd ../.. && cargo build --quiet)
fi

npm ci --no-audit --no-fund --loglevel=error
# Each test has its own time limit; this bounds the whole run too.
timeout 900 node --test --test-concurrency=1 --test-timeout=120000 web.test.mjs
