#!/usr/bin/env bash
# The Debian package, end to end on this machine (part of scripts/test.sh):
# it builds, as rs-messaging, a name apt knows no other package by;
# lintian finds no error; dpkg -i installs it, with the user rs
# and the spool /var/spool/rs (mode 750, no world access); rs-queue init
# works there as user rs; man finds rs-send's page; the demo's round trip
# runs with the installed binaries; removal and purge leave the spool.
# Needs root (dpkg). It refuses to touch a package it did not install, and
# leaves the machine as it found it.
set -euo pipefail
cd "$(dirname "$0")/.."

fail() { echo "test-package: FAILED: $*" >&2; exit 1; }
if [ "$(id -u)" != 0 ]; then
    echo "test-package: skipped: dpkg -i needs root"
    exit 0
fi
pkg=rs-messaging
for p in rs "$pkg"; do
    if dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q installed; then
        fail "a package $p is already here: remove it first (this test installs and removes its own)"
    fi
done
[ -e /var/spool/rs ] && fail "/var/spool/rs is already here: remove it first (this test makes its own)"

echo "== the name is free"
# apt must know no other package of this name, or an upgrade replaces ours
# (as Debian's rs, "reshape a data array", did to our first package).
# A machine whose packages came preinstalled may have no index yet.
[ -n "$(apt-cache pkgnames | head -n 1)" ] || apt-get update -qq
[ -n "$(apt-cache pkgnames | head -n 1)" ] || fail "apt's package index is empty, even after apt-get update"
if apt-cache show "$pkg" >/dev/null 2>&1; then
    fail "apt knows a package $pkg: $(apt-cache show "$pkg" | grep -m1 '^Description')"
fi

# What is tested here is the package (its files, scripts, user, spool),
# not the optimiser: built without LTO and with 16 code units, the build
# takes a third of the time. scripts/package.sh alone builds the package
# as shipped (fat LTO).
CARGO_PROFILE_RELEASE_LTO=false CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16 \
    CARGO_PROFILE_RELEASE_DEBUG=0 scripts/package.sh
deb=$(ls target/debian/"$pkg"_*.deb | head -n 1)
[ "$(dpkg-deb -f "$deb" Package)" = "$pkg" ] || fail "$deb is not the package $pkg"
[ "$(dpkg-deb -f "$deb" Replaces)" = "rs (<< 0.1.0-2)" ] || fail "$deb does not replace our earlier package rs"

echo "== lintian $deb"
lintian --fail-on error --tag-display-limit 0 "$deb" 2>&1 | grep -v 'running with root privileges' || true
lintian --fail-on error "$deb" >/dev/null 2>&1 || fail "lintian reports errors"

cleanup() {
    dpkg --purge "$pkg" >/dev/null 2>&1 || true
    rm -rf /var/spool/rs
    getent passwd rs >/dev/null && userdel rs 2>/dev/null || true
    getent group rs >/dev/null && groupdel rs 2>/dev/null || true
}
trap cleanup EXIT

echo "== dpkg -i"
DEBIAN_FRONTEND=noninteractive dpkg -i "$deb" >/dev/null
getent passwd rs >/dev/null || fail "no user rs"
getent group rs >/dev/null || fail "no group rs"
[ "$(stat -c '%U:%G %a' /var/spool/rs)" = "rs:rs 750" ] \
    || fail "/var/spool/rs is $(stat -c '%U:%G %a' /var/spool/rs), not rs:rs 750"
for b in rs-send rs-queue rs-relay rs-ack rs-spm; do
    [ -x "/usr/bin/$b" ] || fail "/usr/bin/$b missing"
done

echo "== rs-queue init as user rs"
runuser -u rs -- env RS_SPOOL=/var/spool/rs /usr/bin/rs-queue init --site pkg --component pkg.test
[ "$(stat -c '%U' /var/spool/rs/config.toml)" = rs ] || fail "config.toml is not rs's"
echo hello | runuser -u rs -- env RS_SPOOL=/var/spool/rs /usr/bin/rs-send --class test --subclass pkg >/dev/null

echo "== man"
page=$(man -w rs-send) || fail "man does not find rs-send"
[ "$page" = /usr/share/man/man1/rs-send.1.gz ] || fail "man rs-send is $page"
man -w rs-relay-silent >/dev/null || fail "man does not find a subcommand's page"

echo "== the demo with the installed binaries"
RS_DEMO_BIN=/usr/bin scripts/demo.sh >/tmp/rs-package-demo.log 2>&1 \
    || { tail -20 /tmp/rs-package-demo.log; fail "the demo failed"; }
left=$(RS_SPOOL=spool/demo-a /usr/bin/rs-queue list --json | wc -l)
[ "$left" = 0 ] || fail "the demo left $left message(s) in A's queue"
grep -q "demo done" /tmp/rs-package-demo.log || fail "the demo did not finish"
rm -rf spool/demo-a spool/demo-b spool/demo-stick

echo "== removal keeps the spool"
dpkg -r "$pkg" >/dev/null
[ ! -e /usr/bin/rs-send ] || fail "/usr/bin/rs-send left after removal"
[ -f /var/spool/rs/config.toml ] || fail "removal deleted the spool"
DEBIAN_FRONTEND=noninteractive dpkg --purge "$pkg" >/dev/null
[ -f /var/spool/rs/config.toml ] || fail "purge deleted the spool without asking"
dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q installed && fail "$pkg still installed"
echo "test-package: passed"
