#!/usr/bin/env bash
# Installs the Debian packages sockvisor's tests, benchmarks and demo need,
# only when some are missing, so a second `make test` starts at once.
set -euo pipefail

packages=(
	apache2 gunicorn python3-gunicorn uwsgi-core uwsgi-plugin-python3 php-fpm
	wrk curl mmdebstrap iproute2 procps psmisc
	lintian rpm cpio groff-base checkpolicy semodule-utils policycoreutils selinux-policy-dev gnuplot-nox
	openssl # [H] self-signed certificates for the TLS site tests
	uvicorn python3-uvicorn puma ruby-sd-notify python3-gunicorn python3-systemd # [G]
	python3-flask # [I] the density benchmark's sites are small Flask apps
	ansible # [M] the node test runs the Ansible role from the host; cloud-init runs only inside the node (its rootfs has it)
)

missing=()
for p in "${packages[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
	exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
	echo "install-deps: missing packages: ${missing[*]}; run as root (sudo make test) or install them with apt-get" >&2
	exit 2
fi
echo "install-deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# The tests start their own Apache and PHP-FPM; the packaged ones must not
# hold port 80 or the shared sockets. Without systemd as PID 1 nothing was
# started; where it was, stop only these two units.
if [ -d /run/systemd/system ]; then
	systemctl stop apache2.service php8.2-fpm.service 2>/dev/null || true
fi
