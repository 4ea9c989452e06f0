#!/usr/bin/env bash
# Builds dist/sockvisor_<version>_amd64.deb and dist/sockvisor-<version>.x86_64.rpm
# from bin/sockvisor with nfpm (packaging/nfpm.yaml). Run by `make package`,
# from the repository root, with VERSION, DIST, BIN and NFPM set.
#
# Generated here, into a temporary stage directory: the man page (from the
# binary's --help texts), the Debian changelog, and the compiled SELinux
# policy module.
set -euo pipefail
cd "$(dirname "$0")/.."

: "${VERSION:?VERSION is not set (make package sets it from git)}"
DIST=${DIST:-dist}
BIN=${BIN:-bin/sockvisor}
NFPM=${NFPM:-go run github.com/goreleaser/nfpm/v2/cmd/nfpm@v2.45.2}

# dpkg and rpm both accept this; "-" would be a Debian revision and is not
# allowed in an rpm version, "_" breaks file names.
if ! [[ $VERSION =~ ^[0-9][A-Za-z0-9.+~]*$ ]]; then
	echo "package: version '$VERSION' is not valid for both dpkg and rpm (digits first, then [A-Za-z0-9.+~])" >&2
	exit 1
fi
if [ "$BIN" != bin/sockvisor ]; then
	echo "package: nfpm.yaml packages bin/sockvisor, not $BIN" >&2
	exit 1
fi
[ -x "$BIN" ] || { echo "package: $BIN is missing; run make build" >&2; exit 1; }
for tool in checkmodule semodule_package gzip; do
	command -v "$tool" >/dev/null || {
		echo "package: $tool is missing (apt-get install checkpolicy semodule-utils, or make deps)" >&2
		exit 1
	}
done

# Reproducible: file times and the changelog date come from the commit.
SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}
export SOURCE_DATE_EPOCH

mkdir -p "$DIST"
STAGE=$(mktemp -d "${TMPDIR:-/tmp}/sockvisor-pkg.XXXXXX")
trap 'rm -rf "$STAGE"' EXIT

# Man page, from the same texts as --help.
"$BIN" man >"$STAGE/sockvisor.8"
gzip -9n "$STAGE/sockvisor.8"

# Debian changelog. The version has no Debian revision (the package is
# built from upstream's tree, like a native package), so it is changelog.gz.
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
{
	echo "sockvisor ($VERSION) unstable; urgency=medium"
	echo
	echo "  * Built from git commit $commit."
	echo
	echo " -- sockvisor developers <dev@sockvisor.invalid>  $(date -u -R -d "@$SOURCE_DATE_EPOCH")"
} >"$STAGE/changelog"
gzip -9n "$STAGE/changelog"

# SELinux module for the rpm. Module format 19 loads on RHEL 8 and later.
checkmodule -M -m -c 19 -o "$STAGE/sockvisor.mod" packaging/selinux/sockvisor.te >/dev/null
semodule_package -o "$STAGE/sockvisor.pp" -m "$STAGE/sockvisor.mod" -f packaging/selinux/sockvisor.fc

export VERSION STAGE
deb="$DIST/sockvisor_${VERSION}_amd64.deb"
rpm="$DIST/sockvisor-${VERSION}.x86_64.rpm"
rm -f "$deb" "$rpm"
# shellcheck disable=SC2086 # NFPM is a command line.
$NFPM package --config packaging/nfpm.yaml --packager deb --target "$deb"
# shellcheck disable=SC2086
$NFPM package --config packaging/nfpm.yaml --packager rpm --target "$rpm"
