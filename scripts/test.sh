#!/usr/bin/env bash
# The test command (README, "Run the tests"): formatting, lints as errors, and
# the whole test suite of the workspace. CI runs exactly this after .ci/run has
# installed the system packages.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== cargo fmt --check"
cargo fmt --all --check

echo "== cargo clippy -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings

echo "== cargo test"
# cargo prints one "test result:" line per test binary, the last often a doc-test
# run with nothing in it; finish with the workspace's totals on one line.
# A test that needs root returns early without it (cargo counts it as passed)
# and writes its name to RAMPART_SKIPPED_LOG: those count as skipped, with the
# #[ignore]d ones. With RAMPART_REQUIRE_ROOT=1 (.ci/run) such a test fails.
log=$(mktemp)
skipped_log=$(mktemp)
trap 'rm -f "$log" "$skipped_log"' EXIT
set +e
RAMPART_SKIPPED_LOG=$skipped_log cargo test --workspace --locked --no-fail-fast 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
if [ -s "$skipped_log" ]; then
  echo "== skipped, need root:"
  sed 's/^/   /' "$skipped_log"
fi
awk -v gated="$(wc -l <"$skipped_log")" '/^test result:/ {
       for (i = 1; i < NF; i++) {
         if ($(i + 1) ~ /^passed/) passed += $i
         if ($(i + 1) ~ /^failed/) failed += $i
         if ($(i + 1) ~ /^ignored/) ignored += $i
       }
     }
     END { printf "%d passed, %d failed, %d skipped\n", passed - gated, failed, ignored + gated }' "$log"
exit "$status"
