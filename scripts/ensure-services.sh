#!/usr/bin/env bash
# Make sure the services used by the integration tests and benchmarks are up:
#   - PostgreSQL at 127.0.0.1:5432 (user "postgres", trust auth)
#   - NATS with JetStream at 127.0.0.1:4222
#
# If ROSTER_TEST_DATABASE_URL / ROSTER_TEST_NATS_URL are set and name some
# other host:port, that endpoint is only checked for reachability and nothing
# is started locally. A URL naming the local default endpoint (loopback on
# the default port) is treated like an unset one.
set -euo pipefail

readonly WAIT_SECS=30
readonly PG_HOST=127.0.0.1
readonly PG_PORT=5432
readonly NATS_HOST=127.0.0.1
readonly NATS_PORT=4222
readonly NATS_BIN=/usr/sbin/nats-server
readonly NATS_STORE=/var/lib/nats-server
readonly NATS_LOG=/var/log/nats-server.log
readonly NATS_PIDFILE=/run/roster-nats-server.pid

APT_UPDATED=0

info() { printf '%s\n' "$*" >&2; }
die() {
	printf 'error: %s\n' "$*" >&2
	exit 1
}

# parse_host_port URL DEFAULT_PORT -> prints "host port"
# Handles scheme://[user[:pass]@]host[:port][/path][?query], bracketed IPv6
# hosts and comma-separated server lists (the first entry is used).
parse_host_port() {
	local url=$1 default_port=$2 rest host port
	rest=${url#*://}
	rest=${rest%%,*}
	rest=${rest%%/*}
	rest=${rest%%\?*}
	rest=${rest##*@}
	if [[ $rest == \[* ]]; then
		host=${rest%%]*}
		host=${host#[}
		rest=${rest#*]}
		port=${rest#:}
	elif [[ $rest == *:* ]]; then
		host=${rest%%:*}
		port=${rest#*:}
	else
		host=$rest
		port=
	fi
	[[ -n $host ]] || host=localhost
	[[ -n $port ]] || port=$default_port
	[[ $port =~ ^[0-9]+$ ]] || die "cannot parse port from '$url'"
	printf '%s %s\n' "$host" "$port"
}

# is_local_default HOST PORT DEFAULT_PORT
is_local_default() {
	[[ $1 == 127.0.0.1 || $1 == localhost || $1 == ::1 ]] && [[ $2 == "$3" ]]
}

# tcp_open HOST PORT: succeeds if a TCP connection can be made.
tcp_open() {
	# shellcheck disable=SC2016 # expanded by the inner shell
	timeout 3 bash -c 'exec 3<>"/dev/tcp/$1/$2"' _ "$1" "$2" 2>/dev/null
}

# pg_reachable HOST PORT
pg_reachable() {
	if command -v pg_isready >/dev/null 2>&1; then
		pg_isready -q -t 3 -h "$1" -p "$2"
	else
		tcp_open "$1" "$2"
	fi
}

# wait_for CHECK_FN HOST PORT: retries CHECK_FN for up to WAIT_SECS seconds.
wait_for() {
	local check=$1 host=$2 port=$3 deadline
	deadline=$((SECONDS + WAIT_SECS))
	until "$check" "$host" "$port"; do
		((SECONDS < deadline)) || return 1
		sleep 1
	done
}

# nats_info HOST PORT: prints the INFO line the server sends on connect.
nats_info() {
	# shellcheck disable=SC2016 # expanded by the inner shell
	timeout 5 bash -c '
		exec 3<>"/dev/tcp/$1/$2" || exit 1
		IFS= read -r line <&3 || exit 1
		exec 3>&-
		printf "%s\n" "$line"
	' _ "$1" "$2" 2>/dev/null
}

# check_jetstream HOST PORT
check_jetstream() {
	local line
	line=$(nats_info "$1" "$2") || die "nats: no INFO line from $1:$2"
	[[ $line == INFO* ]] || die "nats: unexpected greeting from $1:$2: ${line:0:80}"
	[[ $line =~ \"jetstream\":[[:space:]]*true ]] ||
		die "nats: server at $1:$2 is running without JetStream (start it with -js)"
}

require_root() {
	[[ $(id -u) -eq 0 ]] || die "$1: not running and root is required to install/start it"
}

apt_install() {
	require_root "$1"
	command -v apt-get >/dev/null 2>&1 || die "$1: apt-get not found; install $1 manually"
	export DEBIAN_FRONTEND=noninteractive
	if ((APT_UPDATED == 0)); then
		info "apt-get update"
		apt-get update -qq >&2
		APT_UPDATED=1
	fi
	info "apt-get install -y postgresql nats-server"
	apt-get install -y -qq --no-install-recommends postgresql nats-server >&2
}

# ---------------------------------------------------------------- postgres

pg_configure() {
	local dir=$1 hba=$1/pg_hba.conf conf=$1/postgresql.conf tmp line
	local -a want=(
		'local   all             all                                     trust'
		'host    all             all             127.0.0.1/32            trust'
		'host    all             all             ::1/128                 trust'
	)
	# pg_hba.conf is first-match, so missing trust rules go at the top.
	tmp=$(mktemp)
	for line in "${want[@]}"; do
		if ! grep -Eq "^[[:space:]]*$(sed -E 's/[[:space:]]+/[[:space:]]+/g; s/\./\\./g' <<<"$line")[[:space:]]*$" "$hba"; then
			printf '%s\n' "$line" >>"$tmp"
		fi
	done
	if [[ -s $tmp ]]; then
		info "postgres: adding trust rules to $hba"
		cat "$hba" >>"$tmp"
		cat "$tmp" >"$hba"
	fi
	rm -f "$tmp"

	# listen_addresses defaults to 'localhost'; only override an explicit
	# setting that leaves out the loopback interface.
	line=$(grep -hE '^[[:space:]]*listen_addresses[[:space:]]*=' "$conf" "$dir"/conf.d/*.conf 2>/dev/null | tail -1 || true)
	if [[ -n $line && ! $line =~ (localhost|127\.0\.0\.1|\*|0\.0\.0\.0) ]]; then
		info "postgres: setting listen_addresses = 'localhost'"
		printf "\nlisten_addresses = 'localhost'\n" >>"$conf"
	fi
}

ensure_local_postgres() {
	local version='' dir v
	if pg_reachable "$PG_HOST" "$PG_PORT"; then
		return 0
	fi
	require_root postgres
	if ! command -v pg_ctlcluster >/dev/null 2>&1 || ! compgen -G '/etc/postgresql/*' >/dev/null; then
		apt_install postgres
	fi
	for v in /etc/postgresql/*/; do
		[[ -d $v ]] || continue
		v=${v%/}
		version=${v##*/}
		break
	done
	[[ -n $version ]] || die "postgres: no cluster version under /etc/postgresql"
	dir=/etc/postgresql/$version/main
	if [[ ! -d $dir ]]; then
		info "postgres: creating cluster $version/main"
		pg_createcluster --port "$PG_PORT" "$version" main >&2
	fi
	pg_configure "$dir"
	if pg_ctlcluster --skip-systemctl-redirect "$version" main status >/dev/null 2>&1; then
		info "postgres: restarting cluster $version/main"
		pg_ctlcluster --skip-systemctl-redirect "$version" main restart >&2
	else
		info "postgres: starting cluster $version/main"
		pg_ctlcluster --skip-systemctl-redirect "$version" main start >&2
	fi
	wait_for pg_reachable "$PG_HOST" "$PG_PORT" ||
		die "postgres: not reachable at $PG_HOST:$PG_PORT after ${WAIT_SECS}s (check the port in $dir/postgresql.conf)"
}

ensure_postgres() {
	local host port
	if [[ -n ${ROSTER_TEST_DATABASE_URL:-} ]]; then
		read -r host port < <(parse_host_port "$ROSTER_TEST_DATABASE_URL" 5432)
	fi
	if [[ -n ${ROSTER_TEST_DATABASE_URL:-} ]] && ! is_local_default "$host" "$port" "$PG_PORT"; then
		wait_for pg_reachable "$host" "$port" ||
			die "postgres: $host:$port (ROSTER_TEST_DATABASE_URL) not reachable after ${WAIT_SECS}s"
		printf 'postgres: ready (%s:%s)\n' "$host" "$port"
		return 0
	fi
	ensure_local_postgres
	if command -v psql >/dev/null 2>&1; then
		local err
		err=$(PGPASSWORD='' psql -w -X -q -A -t -h "$PG_HOST" -p "$PG_PORT" -U postgres -d postgres -c 'select 1' 2>&1 >/dev/null) ||
			die "postgres: login as postgres at $PG_HOST:$PG_PORT failed (pg_hba.conf needs trust): ${err//$'\n'/ }"
	fi
	printf 'postgres: ready\n'
}

# -------------------------------------------------------------------- nats

ensure_local_nats() {
	if tcp_open "$NATS_HOST" "$NATS_PORT"; then
		return 0
	fi
	require_root nats
	if [[ ! -x $NATS_BIN ]]; then
		apt_install nats
	fi
	[[ -x $NATS_BIN ]] || die "nats: $NATS_BIN not found after install"
	mkdir -p "$NATS_STORE"
	info "nats: starting $NATS_BIN"
	start-stop-daemon --start --oknodo --background \
		--make-pidfile --pidfile "$NATS_PIDFILE" \
		--exec "$NATS_BIN" -- \
		-a "$NATS_HOST" -p "$NATS_PORT" -js -sd "$NATS_STORE" -l "$NATS_LOG" >&2
	wait_for tcp_open "$NATS_HOST" "$NATS_PORT" ||
		die "nats: not reachable at $NATS_HOST:$NATS_PORT after ${WAIT_SECS}s (see $NATS_LOG)"
}

ensure_nats() {
	local host port
	if [[ -n ${ROSTER_TEST_NATS_URL:-} ]]; then
		read -r host port < <(parse_host_port "$ROSTER_TEST_NATS_URL" 4222)
	fi
	if [[ -n ${ROSTER_TEST_NATS_URL:-} ]] && ! is_local_default "$host" "$port" "$NATS_PORT"; then
		wait_for tcp_open "$host" "$port" ||
			die "nats: $host:$port (ROSTER_TEST_NATS_URL) not reachable after ${WAIT_SECS}s"
		check_jetstream "$host" "$port"
		printf 'nats: ready (jetstream, %s:%s)\n' "$host" "$port"
		return 0
	fi
	ensure_local_nats
	check_jetstream "$NATS_HOST" "$NATS_PORT"
	printf 'nats: ready (jetstream)\n'
}

ensure_postgres
ensure_nats
