#!/usr/bin/env bash
# Builds pgfleet and its tests with AddressSanitizer and UndefinedBehaviorSanitizer into
# ./build-sanitized and runs the unit tests and the proxy's integration tests against that binary
# (memory errors in the event loop show up here before they crash a user's proxy). Slow: the
# first build takes about an hour on 2 cores. Not part of scripts/test.sh.
# Extra arguments replace the gtest filter of the integration run (default: Proxy*).
# Reports go to build-sanitized/reports/; the script fails if there are any.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
if [ ! -f build-sanitized/build.ninja ]; then
  cmake -S . -B build-sanitized -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPGFLEET_SANITIZE=ON
fi
cmake --build build-sanitized --target pgfleet pgfleet_unit_tests pgfleet_integration_tests
reports=$PWD/build-sanitized/reports
rm -rf "$reports" && mkdir -p "$reports" && chmod 1777 "$reports"  # servers' agents may run as postgres
# Leak reports are off: daemons exit by signal, and what they hold then is not a leak worth a failure.
export ASAN_OPTIONS="detect_leaks=0:log_path=$reports/asan"
export UBSAN_OPTIONS="print_stacktrace=1:log_path=$reports/ubsan"
# Three checks fail under ASan for the sanitizer's own reasons, so they are left out here: two RSS
# bounds (ASan's quarantine keeps freed buffers) and a stress test of the local DCS whose slowed
# writers outrun the kept history (the DCS then reports the outcome unknown, as designed).
status=0
build-sanitized/tests/pgfleet_unit_tests --gtest_filter='-LocalDcsTest.ConcurrentIncrementsFromManyProcessesAreNotLost' ||
  status=1
build-sanitized/tests/pgfleet_integration_tests \
  --gtest_filter="${1:-Proxy*}:-ProxyBadInputTest.LargeParametersOfANamedStatementStreamThrough:ProxyProtocolTest.ASubscriberThatDoesNotReadIsCutOffAndTheProxyStaysBounded" || status=1
if [ -n "$(ls -A "$reports")" ]; then
  echo "sanitizer reports in $reports:" >&2
  ls "$reports" >&2
  status=1
fi
exit $status
