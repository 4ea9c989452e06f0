#!/usr/bin/env bash
# sudo make demo: sockvisor's main job on a built-in example. A Gunicorn app
# gets its socket from sockvisor, Apache proxies /demo/ to it over the socket
# with a config sockvisor generated, and a restart under load refuses nothing.
# Everything the demo adds is removed when it ends (Apache's proxy modules
# stay enabled if the demo had to enable them).
set -euo pipefail

bin=$(realpath "${1:-bin/sockvisor}")
here=$(cd "$(dirname "$0")" && pwd)
apps=$(cd "$here/../examples/apps" && pwd)
if [ "$(id -u)" -ne 0 ]; then
	echo "demo: run as root: sudo make demo" >&2
	exit 2
fi

work=$(mktemp -d /tmp/sockvisor-demo.XXXXXX)
chmod 755 "$work"
cp "$apps/hello.py" "$work/"
conf="$work/sockvisor.hcl"
apache_conf=/etc/apache2/conf-available/sockvisor-demo.conf
svpid=""
started_apache=0

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

cleanup() {
	set +e
	if [ -n "$svpid" ] && kill -0 "$svpid" 2>/dev/null; then
		say "stopping sockvisor (SIGTERM): backends stop, socket files stay"
		kill -TERM "$svpid"
		wait "$svpid"
	fi
	if [ -e /etc/apache2/conf-enabled/sockvisor-demo.conf ] || [ -e "$apache_conf" ]; then
		rm -f /etc/apache2/conf-enabled/sockvisor-demo.conf "$apache_conf"
		reload_apache
	fi
	if [ "$started_apache" = 1 ]; then
		echo "demo: stopping the Apache it started"
		apache2ctl stop
	fi
	rm -rf /run/sockvisor-demo "$work"
	echo "demo: cleaned up"
}
trap cleanup EXIT

have_systemd() { [ -d /run/systemd/system ]; }
reload_apache() {
	if have_systemd; then systemctl reload apache2; else apache2ctl graceful; fi
}

say "Apache"
changed=0
for m in proxy proxy_http headers; do
	if ! a2query -q -m "$m"; then a2enmod -q "$m"; changed=1; fi
done
if have_systemd; then
	reload_mode=dbus
	if [ $changed = 1 ] || ! systemctl -q is-active apache2; then systemctl restart apache2; fi
else
	# No systemd here: sockvisor reloads Apache with apachectl graceful.
	reload_mode=apachectl
	if pid=$(cat /var/run/apache2/apache2.pid 2>/dev/null) && kill -0 "$pid" 2>/dev/null; then
		# A newly enabled module needs a full restart, not a graceful one.
		[ $changed = 1 ] && apache2ctl restart
	else
		apache2ctl start
		started_apache=1
	fi
fi
echo "Apache is running; sockvisor will reload it with: $reload_mode"

cat >"$conf" <<HCL
socket_dir     = "/run/sockvisor-demo"
control_socket = "/run/sockvisor-demo.ctl"

apache {
  config_file = "$apache_conf"
  reload      = "$reload_mode"
}

backend "demo" {
  preset  = "gunicorn"
  command = ["/usr/bin/gunicorn", "--workers", "2", "--chdir", "$work", "hello:app"]
  mount   = "/demo/"
  user    = "www-data"
}
HCL

say "sockvisor check: the socket plan"
"$bin" check --config "$conf"

say "sockvisor run (in the background)"
"$bin" run --config "$conf" &
svpid=$!
# status answers as soon as the control socket is up; wait for "running".
for _ in $(seq 1 300); do
	if st=$("$bin" status --json --config "$conf" 2>/dev/null) && [[ $st == *'"phase":"running"'* ]]; then
		break
	fi
	sleep 0.2
done

say "the generated Apache config ($apache_conf)"
cat "$apache_conf"

say "the socket, owned as configured"
ls -la /run/sockvisor-demo/

say "requests through Apache, over the Unix socket"
for _ in 1 2 3; do curl -fsS http://127.0.0.1/demo/; done

say "sockvisor status"
"$bin" status --config "$conf"

say "8 s of load (wrk, 4 connections) with 'sockvisor restart demo' in the middle"
( sleep 3; "$bin" restart --config "$conf" demo ) &
restarter=$!
wrk -t2 -c4 -d8s http://127.0.0.1/demo/ | tee "$work/wrk.txt"
wait "$restarter"
fails=$(awk '/Non-2xx/ {n+=$NF} /Socket errors/ {gsub(/[^0-9 ]/," "); for(i=1;i<=NF;i++) n+=$i} END {print n+0}' "$work/wrk.txt")
echo "failed requests during the restart: $fails"

say "sockvisor status after the restart: a new pid (RESTARTS counts crashes only)"
"$bin" status --config "$conf"

say "sockvisor doctor"
"$bin" doctor --config "$conf" || true
