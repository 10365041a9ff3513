#!/usr/bin/env bash
# Build rems and run every test: the normal build, then an ASan+UBSan build.
# Usage: scripts/test.sh            (both builds)
#        REMS_TEST_QUICK=1 scripts/test.sh   (normal build only)
set -euo pipefail
cd "$(dirname "$0")/.."
echo "== private headers stay in their module" >&2
bash scripts/check-includes.sh
echo "== setup" >&2
bash scripts/setup.sh
echo "== build (RelWithDebInfo)" >&2
bash scripts/build.sh build
echo "== tests (RelWithDebInfo)" >&2
ctest --test-dir build --output-on-failure -j2 --timeout 600
if [ "${REMS_TEST_QUICK:-0}" != 1 ]; then
    echo "== build (ASan+UBSan)" >&2
    bash scripts/build.sh build-asan -DCMAKE_BUILD_TYPE=Debug \
        -DREMS_SANITIZE=address,undefined
    echo "== tests (ASan+UBSan)" >&2
    ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
    UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
        ctest --test-dir build-asan --output-on-failure -j2 --timeout 900
fi
