#!/usr/bin/env bash
# Builds the release binary with the Swift runtime linked in (--static-swift-stdlib: it runs on a
# machine without the toolchain) and a .deb around it with dpkg-deb:
#   /usr/bin/cutover, /lib/systemd/system/cutover{,-agent}.service, /etc/cutover/cutover.json
#   (Config/cutover.json with the packaged paths; a conffile), /usr/share/man/man1/cutover.1.gz
#   (generated from the --help texts), and a postinst that creates the users "cutover" and
#   "cutover-agent" (group "cutover").
#
# Usage: Deploy/build-deb.sh [OUTPUT-DIRECTORY]       (default .build/deb-out)
# The build has its own scratch path (.build/deb, or $CUTOVER_DEB_SCRATCH), so it can run while
# `swift test` holds .build, and later runs are incremental.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
out=${1:-$root/.build/deb-out}
scratch=${CUTOVER_DEB_SCRATCH:-$root/.build/deb}
build=(swift build -c release --static-swift-stdlib --package-path "$root" --scratch-path "$scratch")

"${build[@]}" --product cutover
binary="$("${build[@]}" --show-bin-path)/cutover"
version=$("$binary" --version | awk '{ print $2 }')
arch=$(dpkg --print-architecture)

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
install -D -m 0755 "$binary" "$stage/usr/bin/cutover"
install -D -m 0644 "$root/Deploy/cutover.service" "$stage/lib/systemd/system/cutover.service"
install -D -m 0644 "$root/Deploy/cutover-agent.service" "$stage/lib/systemd/system/cutover-agent.service"

# The example config, with the paths the units give the proxy (and a socket group "cutover" can use).
mkdir -p "$stage/etc/cutover"
sed -e 's|"admin": { "socket": "/tmp/cutover/admin.sock"|"admin": { "socket": "/run/cutover/admin.sock", "socket_mode": "0660", "socket_group": "cutover"|' \
    -e 's|"state_file": "/tmp/cutover/state.json"|"state_file": "/var/lib/cutover/state.json"|' \
    "$root/Config/cutover.json" > "$stage/etc/cutover/cutover.json"
grep -q '/run/cutover/admin.sock' "$stage/etc/cutover/cutover.json" || { echo "build-deb.sh: Config/cutover.json changed shape; update the sed above" >&2; exit 1; }

# The man page: the --help texts, verbatim, one section per command.
mkdir -p "$stage/usr/share/man/man1"
roff() { sed -e 's/\\/\\e/g' -e "s/^\\([.']\\)/\\\\\\&\\1/"; }
{
    echo ".TH CUTOVER 1 \"\" \"cutover $version\" \"User Commands\""
    echo ".SH NAME"
    echo "cutover \\- move live traffic from v1 to v2 without users noticing"
    echo ".SH SYNOPSIS"
    echo ".nf"
    "$binary" --help | roff
    echo ".fi"
    for command in $("$binary" --help | awk '/^Commands:/ { on = 1; next } on && NF { print $1 }'); do
        echo ".SH \"cutover $command\""
        echo ".nf"
        "$binary" "$command" --help | roff
        echo ".fi"
    done
    echo ".SH SEE ALSO"
    echo "The reference in docs/ of the source tree; systemd units cutover.service and cutover-agent.service."
} | gzip -9n > "$stage/usr/share/man/man1/cutover.1.gz"
chmod 0644 "$stage/usr/share/man/man1/cutover.1.gz"

mkdir -p "$stage/DEBIAN"
cat > "$stage/DEBIAN/control" <<CONTROL
Package: cutover
Version: $version
Architecture: $arch
Maintainer: Cutover maintainers <cutover@localhost>
Depends: libc6, libstdc++6, libpq5, libssl3, adduser
Section: net
Priority: optional
Description: reverse proxy and agent for zero-downtime blue/green cutovers
 A TCP/HTTP reverse proxy that owns the traffic switch (drain, hold, maintenance and
 read-only gates, runtime endpoints, one-shot deploy) and an agent that owns the database
 side of the same switch (PostgreSQL read-only fences, maintenance flags, runbooks).
CONTROL
echo "/etc/cutover/cutover.json" > "$stage/DEBIAN/conffiles"
cat > "$stage/DEBIAN/postinst" <<'POSTINST'
#!/bin/sh
set -e
if [ "$1" = configure ]; then
    getent group cutover >/dev/null || addgroup --system cutover
    getent passwd cutover >/dev/null || adduser --system --ingroup cutover --home /var/lib/cutover --no-create-home cutover
    getent passwd cutover-agent >/dev/null || adduser --system --ingroup cutover --home /var/lib/cutover-agent --no-create-home cutover-agent
    if [ -d /run/systemd/system ]; then systemctl daemon-reload || true; fi
fi
POSTINST
chmod 0755 "$stage/DEBIAN/postinst"

mkdir -p "$out"
dpkg-deb --build --root-owner-group "$stage" "$out/cutover_${version}_${arch}.deb" >/dev/null
echo "$out/cutover_${version}_${arch}.deb"
