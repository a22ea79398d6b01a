#!/usr/bin/env bash
# The test command: installs what the build needs, fetches the small real checkpoint used by the
# integration tests (skipped, with the reason printed, if it cannot be fetched), runs every test
# in release mode (numeric code is far too slow in debug).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/fetch-minilm.sh || echo "test: could not fetch all-MiniLM-L6-v2; its integration test will be skipped"
swift test -c release --disable-xctest "$@"
