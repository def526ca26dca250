#!/usr/bin/env bash
# The project's test command (README): every unit and integration test, through the public HTTP API of real
# servers on 127.0.0.1, plus the CLI binary. Tests are quiet unless TEST_LOG=1.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -d ../shared/fixtures/legacy ]; then
  echo "scripts/test.sh: ../shared/fixtures/legacy is missing (the legacy fixture set must sit beside the repository)" >&2
  exit 2
fi
exec cargo test --locked "$@"
