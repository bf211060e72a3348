#!/usr/bin/env bash
# Stages the root filesystem of the rosterd image (deploy/Containerfile):
# the binary, exactly the shared libraries and loader `ldd` says it needs,
# a passwd/group with the non-root user roster (65532), CA certificates and
# the folders rosterd writes to.
#
#   deploy/rootfs.sh <rosterd binary> <context dir>
#
# writes <context dir>/rootfs (copied to / by the Containerfile) and
# <context dir>/home (the user's folder, copied with its ownership).
set -euo pipefail

bin=${1:?usage: rootfs.sh <rosterd binary> <context dir>}
ctx=${2:?usage: rootfs.sh <rosterd binary> <context dir>}
root=$ctx/rootfs
readonly CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt

[[ -x $bin ]] || { echo "rootfs.sh: $bin is not an executable" >&2; exit 1; }
rm -rf "$ctx"
mkdir -p "$root" "$ctx/home"

install -D -m 0755 "$bin" "$root/usr/local/bin/rosterd"

# Each library at the path the loader finds it by (the soname in the
# multiarch folder), the file itself rather than the host's symlink.
libs=$(ldd "$bin" | awk '
	$2 == "=>" && $3 ~ /^\// { print $3; next }
	$1 ~ /^\// { print $1 }
')
[[ -n $libs ]] || { echo "rootfs.sh: ldd found no libraries; is $bin static?" >&2; exit 1; }
for lib in $libs; do
	install -D -m 0755 "$(readlink -f "$lib")" "$root$lib"
done

install -d -m 0755 "$root/etc/ssl/certs"
[[ -r $CA_BUNDLE ]] || { echo "rootfs.sh: $CA_BUNDLE missing (apt-get install ca-certificates)" >&2; exit 1; }
install -m 0644 "$CA_BUNDLE" "$root/etc/ssl/certs/ca-certificates.crt"
cat >"$root/etc/passwd" <<'PASSWD'
root:x:0:0:root:/root:/sbin/nologin
roster:x:65532:65532:Roster:/var/lib/roster:/sbin/nologin
PASSWD
cat >"$root/etc/group" <<'GROUP'
root:x:0:
roster:x:65532:
GROUP
printf 'hosts: files dns\n' >"$root/etc/nsswitch.conf"
chmod 0644 "$root/etc/passwd" "$root/etc/group" "$root/etc/nsswitch.conf"
install -d -m 1777 "$root/tmp"
install -d -m 0755 "$root/var/lib"

printf '%s\n' "$libs" | sed 's/^/rootfs.sh: library /' >&2
