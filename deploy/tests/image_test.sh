#!/usr/bin/env bash
# Proves the rosterd image holds everything rosterd needs: exports the
# image's filesystem and runs the binary from it alone (chroot, as the
# image's non-root user, nothing writable but /tmp), then checks that it
# answers --version, serves gRPC health for every service on the embedded
# default, migrates a PostgreSQL database and serves on PostgreSQL and NATS.
#
#   deploy/tests/image_test.sh <image>      (make test-image)
#
# Needs root (chroot), the project's .venv (gRPC health client), PostgreSQL
# and NATS as scripts/ensure-services.sh leaves them.
set -euo pipefail

image=${1:?usage: image_test.sh <image>}
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
python=$repo/.venv/bin/python
pg_url=${ROSTER_TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}
nats_url=${ROSTER_TEST_NATS_URL:-nats://127.0.0.1:4222}
health=("" roster.v1.UserRegistry roster.v1.UserAccess roster.v1.Authentication
	roster.v1.UserInvitationRegistry roster.v1.NotificationService)

work=$(mktemp -d)
root=$work/root
pid=
db=
stream=
cleanup() {
	[[ -n $stream ]] && delete_stream "$stream"
	[[ -n $pid ]] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
	[[ -n $db ]] && psql -q -X "$pg_url" -c "DROP DATABASE IF EXISTS $db" >/dev/null 2>&1
	rm -rf "$work"
}
trap cleanup EXIT
# delete_stream NAME: removes the JetStream stream this test made.
delete_stream() {
	local hostport=${nats_url#*://}
	hostport=${hostport##*@}
	hostport=${hostport%%/*}
	timeout 5 bash -c 'exec 3<>"/dev/tcp/${1%:*}/${1##*:}" || exit 1
		printf "CONNECT {\"verbose\":false}\r\nSUB _INBOX.roster_image_test 1\r\nPUB \$JS.API.STREAM.DELETE.%s _INBOX.roster_image_test 0\r\n\r\n" "$2" >&3
		grep -a -q -m1 "^MSG" <&3' _ "$hostport" "$1" 2>/dev/null || true
}
fail() {
	echo "FAIL $*" >&2
	exit 1
}
ok() { echo "ok  $*"; }

[[ $(id -u) -eq 0 ]] || fail "the image test needs root (chroot)"

# The image's configuration.
read -r user entrypoint < <(podman image inspect "$image" --format '{{.Config.User}} {{json .Config.Entrypoint}}')
[[ $user == 65532:65532 ]] || fail "image user is '$user', want 65532:65532"
[[ $entrypoint == '["/usr/local/bin/rosterd"]' ]] || fail "entrypoint $entrypoint"
ok "image runs /usr/local/bin/rosterd as 65532:65532"

# Its filesystem, exactly.
mkdir -p "$root"
cid=$(podman create "$image")
podman export "$cid" | tar -x -C "$root"
podman rm -f "$cid" >/dev/null
files=$(cd "$root" && find . -type f | sort)
want=$(
	cd "$root" && printf '%s\n' ./etc/group ./etc/nsswitch.conf ./etc/passwd ./etc/ssl/certs/ca-certificates.crt ./usr/local/bin/rosterd
	ldd "$root/usr/local/bin/rosterd" | awk '$2 == "=>" && $3 ~ /^\// { print "." $3; next } $1 ~ /^\// { print "." $1 }'
)
want=$(sort <<<"$want")
# Podman may add its own empty mount-point files (/etc/hosts, /etc/resolv.conf, /run/.containerenv).
extra=$(comm -23 <(echo "$files") <(echo "$want") | grep -v -E '^\./(etc/(hosts|resolv\.conf|hostname)|run/\.containerenv)$' || true)
missing=$(comm -13 <(echo "$files") <(echo "$want"))
[[ -z $missing ]] || fail "missing from the image: $missing"
[[ -z $extra ]] || fail "unexpected files in the image: $extra"
[[ ! -e $root/bin/sh ]] || fail "the image has a shell"
grep -q '^roster:x:65532:65532:' "$root/etc/passwd" || fail "no user roster in /etc/passwd"
writable=$(find "$root" -mindepth 1 \( -user 65532 -o -perm -o+w \) -not -path "$root/tmp" -not -path "$root/var/lib/roster" | sed "s|^$root||")
[[ -z $writable ]] || fail "writable by the user: $writable"
ok "image holds the binary, $(wc -l <<<"$want" | tr -d ' ') files in all, no shell; only /tmp and /var/lib/roster writable"

# Run from the image alone: chroot, as the image's user, writing only to /tmp
# (what an emptyDir gives under readOnlyRootFilesystem).
chroot=$(command -v chroot)
version=$(env -i "$chroot" --userspec=65532:65532 "$root" /usr/local/bin/rosterd --version)
[[ $version == "rosterd "* ]] || fail "--version said: $version"
ok "--version: $version"

free_port() {
	"$python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

serve() { # serve <log> <env...>: starts `rosterd start all`, waits for health
	local log=$1 port
	shift
	port=$(free_port)
	env -i "$@" ROSTER__LISTEN="127.0.0.1:$port" \
		"$chroot" --userspec=65532:65532 "$root" /usr/local/bin/rosterd start all >"$log" 2>&1 &
	pid=$!
	if ! "$python" "$here/wait_serving.py" "127.0.0.1:$port" "${health[@]}" --timeout 60; then
		cat "$log" >&2
		fail "rosterd from the image did not serve health"
	fi
	kill -TERM "$pid"
	wait "$pid" || fail "rosterd did not stop cleanly on SIGTERM"
	pid=
}

serve "$work/embedded.log" ROSTER__DATABASE__DATA_DIR=/tmp/roster
ok "embedded default: health SERVING for the server and all five services"

# PostgreSQL and NATS: migrate first, then serve with migrations off.
db=roster_image_test_$$
psql -q -X "$pg_url" -c "CREATE DATABASE $db" >/dev/null
db_url=${pg_url%/*}/$db
env -i ROSTER__DATABASE__URL="$db_url" "$chroot" --userspec=65532:65532 "$root" /usr/local/bin/rosterd migrate >"$work/migrate.log" 2>&1 || {
	cat "$work/migrate.log" >&2
	fail "rosterd migrate from the image failed"
}
schemas=$(psql -X -A -t "$db_url" -c "SELECT string_agg(nspname, ',' ORDER BY nspname) FROM pg_namespace WHERE nspname IN ('user_registry','access','sessions','invitations','notifications')")
[[ $schemas == *access*invitations*sessions*user_registry* ]] || fail "migrate made schemas: $schemas"
ok "rosterd migrate from the image: schemas $schemas"

stream=ROSTER_IMAGE_TEST_$$
serve "$work/production.log" \
	ROSTER__DATABASE__URL="$db_url" \
	ROSTER__DATABASE__MIGRATE_ON_START=false \
	ROSTER__AUTH__TOKEN_HASH_KEY=image-test-token-hash-key-0123456789abcdef \
	ROSTER__CLUSTER__KEYS=image-test-cluster-key-0123456789abcdef0123 \
	ROSTER__EVENTS__NATS_URL="$nats_url" \
	ROSTER__EVENTS__STREAM="$stream" \
	ROSTER__EVENTS__SUBJECT_PREFIX="roster-image-test-$$" \
	ROSTER__MAIL__SMTP_URL=smtp://127.0.0.1:1 \
	ROSTER__DATABASE__DATA_DIR=/tmp/roster
ok "on PostgreSQL and NATS: health SERVING for the server and all five services"
echo "image checks passed ($image)"
