#!/usr/bin/env bash
# Installs everything rems needs to build and test on Debian 12, as root.
#
# - Debian 12 packages for the build, the libraries and the tests (apt-get).
# - libraft >= 0.18: Debian 12 ships 0.15, which lacks commit-safety fixes,
#   so this builds Debian 13's `raft` source package (fetched with apt from
#   Debian's own registry, without touching the machine's apt configuration)
#   once into $REMS_DEPS_PREFIX and reuses it afterwards, with the fixes in
#   scripts/raft-patches/ applied (each says what it fixes and how it was
#   found). RAFT_BUILD names that set: change it when a patch is added, so
#   that machines with an older build get a new one in a new prefix.
#
# Idempotent: a second run does nothing that is already done. Prints one
# line per step.
set -euo pipefail

RAFT_VERSION=0.22.1
RAFT_BUILD=rems2
PREFIX=${REMS_DEPS_PREFIX:-/opt/rems-deps}
RAFT_PREFIX="$PREFIX/raft-$RAFT_VERSION-$RAFT_BUILD"
PATCHES_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/raft-patches"

log() { printf 'setup: %s\n' "$*" >&2; }

need_root() {
    if [ "$(id -u)" -ne 0 ]; then
        log "must run as root to install packages (apt-get); run with sudo"
        exit 1
    fi
}

PACKAGES=(
    build-essential cmake pkg-config git ca-certificates
    autoconf automake libtool liblz4-dev patch
    libuv1-dev liblmdb-dev lmdb-utils libmsgpack-dev libssl-dev openssl
    libjansson-dev libhttp-parser-dev libyaml-dev libcurl4-openssl-dev
    libcmocka-dev libsystemd-dev
    curl python3 procps iproute2 wrk nftables faketime
)

missing_packages() {
    local p
    for p in "${PACKAGES[@]}"; do
        if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null |
            grep -q 'install ok installed'; then
            printf '%s\n' "$p"
        fi
    done
}

install_packages() {
    local missing
    missing=$(missing_packages)
    if [ -z "$missing" ]; then
        log "debian packages: all present"
        return
    fi
    need_root
    log "debian packages: installing $(echo $missing | tr '\n' ' ')"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # shellcheck disable=SC2086
    apt-get install -y -qq --no-install-recommends $missing >/dev/null
}

build_raft() {
    if [ -f "$RAFT_PREFIX/lib/pkgconfig/raft.pc" ]; then
        log "libraft $RAFT_VERSION-$RAFT_BUILD: present in $RAFT_PREFIX"
        return
    fi
    need_root
    local work
    work=$(mktemp -d /tmp/rems-raft-build.XXXXXX)
    trap 'rm -rf "$work"' RETURN
    log "libraft $RAFT_VERSION: fetching Debian 13's raft source package"
    mkdir -p "$work/lists/partial" "$work/src"
    echo 'deb-src http://deb.debian.org/debian trixie main' >"$work/sources.list"
    local aptopts=(-o "Dir::Etc::sourcelist=$work/sources.list"
        -o Dir::Etc::sourceparts=/nonexistent
        -o "Dir::State::Lists=$work/lists"
        -o APT::Sandbox::User=root)
    apt-get "${aptopts[@]}" update -qq
    (cd "$work/src" &&
        apt-get "${aptopts[@]}" source --download-only -qq raft >/dev/null)
    local tarball
    tarball=$(ls "$work"/src/raft_"$RAFT_VERSION".orig.tar.* 2>/dev/null | head -n 1)
    if [ -z "$tarball" ]; then
        log "libraft: Debian 13 no longer serves raft $RAFT_VERSION (found: $(ls "$work/src" | tr '\n' ' '))"
        exit 1
    fi
    tar -C "$work" -xf "$tarball"
    local srcdir
    srcdir=$(find "$work" -maxdepth 1 -type d -name 'raft-*' | head -n 1)
    local p
    for p in "$PATCHES_DIR"/*.patch; do
        [ -e "$p" ] || continue
        log "libraft $RAFT_VERSION: applying $(basename "$p")"
        patch -d "$srcdir" -p1 -s <"$p"
    done
    log "libraft $RAFT_VERSION-$RAFT_BUILD: building in $srcdir (about 2 minutes)"
    (cd "$srcdir" &&
        autoreconf -i >/dev/null 2>&1 &&
        ./configure --prefix="$RAFT_PREFIX" --disable-example \
            --disable-benchmark >/dev/null &&
        make -j"$(nproc)" >/dev/null 2>&1 &&
        make install >/dev/null)
    log "libraft $RAFT_VERSION-$RAFT_BUILD: installed in $RAFT_PREFIX"
}

install_packages
build_raft
echo "$RAFT_PREFIX"
