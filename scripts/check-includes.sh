#!/usr/bin/env bash
# A module's private headers (<module>/*_int.h) are included only by that
# module's own files (and by its tests under tests/). Prints every breach
# and exits 1 when there is one.
set -euo pipefail
cd "$(dirname "$0")/.."
bad=0
while IFS=: read -r file _ line; do
    hdr=$(sed -n 's/.*#include *"\([^"]*_int\.h\)".*/\1/p' <<<"$line")
    [ -n "$hdr" ] || continue
    mod=${hdr%%/*}
    case "$file" in
        "$mod"/* | tests/*) ;;
        *)
            echo "check-includes: $file includes $hdr, private to $mod/" >&2
            bad=1
            ;;
    esac
done < <(grep -rn --include='*.c' --include='*.h' '#include *"[^"]*_int\.h"' \
    common storage statemachine cluster api agentproto simulator bench \
    jepsen tests 2>/dev/null || true)
exit "$bad"
