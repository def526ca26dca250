#!/usr/bin/env bash
# The project's test command (README): every unit and integration test, through the public HTTP API of real
# servers on 127.0.0.1, plus the CLI binary. Tests are quiet unless TEST_LOG=1.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -d ../shared/fixtures/legacy ]; then
  echo "scripts/test.sh: ../shared/fixtures/legacy is missing (the legacy fixture set must sit beside the repository)" >&2
  exit 2
fi
# The Socket.IO compatibility suite drives the server with the real socket.io-client (tests/js).
if ! command -v node >/dev/null 2>&1; then
  echo "scripts/test.sh: node (Node.js 20+) is needed for the Socket.IO compatibility tests" >&2
  exit 2
fi
npm ci --prefix tests/js --no-audit --no-fund --loglevel=error
exec cargo test --locked "$@"
