#!/usr/bin/env bash
# Installs the Debian packages sockvisor's tests, benchmarks and demo need,
# only when some are missing, so a second `make test` starts at once.
set -euo pipefail

packages=(
	apache2 gunicorn python3-gunicorn uwsgi-core uwsgi-plugin-python3 php-fpm
	wrk curl mmdebstrap iproute2 procps psmisc
	lintian rpm cpio groff-base checkpolicy semodule-utils policycoreutils selinux-policy-dev gnuplot-nox
	mariadb-server php-mysql # [H] WordPress acceptance test: a private mariadbd, PHP's mysqli
	wordpress wordpress-theme-twentytwentythree # [H] WordPress (without recommends it has no theme)
	dokuwiki # [H] DokuWiki acceptance test
	python3-django # [H] Django admin behind Gunicorn
	uvicorn python3-uvicorn python3-websockets # [H] ASGI with WebSockets (the uvicorn command is in package uvicorn)
	puma ruby-sd-notify # [H] Rack on Puma; sd_notify lets Puma report READY=1
	ssl-cert openssl # [H] self-signed certificates for the TLS site tests
	uvicorn python3-uvicorn puma ruby-sd-notify python3-gunicorn python3-systemd # [G]
	python3-flask # [I] the density benchmark's sites are small Flask apps
	ansible # [M] the node test runs the Ansible role from the host; cloud-init runs only inside the node (its rootfs has it)
	libapache2-mod-php # [J] the doctor's mod_php tests load libphpX.Y.so into a private Apache
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
# libapache2-mod-php's postinst (pulled in by wordpress and dokuwiki too)
# enables phpX.Y and mpm_prefork in the system Apache; the tests' private
# Apache loads its own modules and needs only the module file, so undo what
# this install just enabled. # [J] [H]
if [[ " ${missing[*]} " =~ " "(libapache2-mod-php|wordpress|dokuwiki)" " ]] && command -v a2dismod >/dev/null; then
	for m in /etc/apache2/mods-enabled/php*.load; do
		[ -e "$m" ] && a2dismod -q "$(basename "$m" .load)" >/dev/null 2>&1 || true
	done
	a2dismod -q mpm_prefork >/dev/null 2>&1 || true
	a2enmod -q mpm_event >/dev/null 2>&1 || true
fi
# The tests start their own Apache, PHP-FPM and MariaDB; the packaged ones
# must not hold port 80 or the shared sockets. Without systemd as PID 1
# nothing was started; where it was, stop only these units.
if [ -d /run/systemd/system ]; then
	systemctl stop apache2.service 'php*-fpm.service' mariadb.service 2>/dev/null || true
fi
