#!/usr/bin/env bash
# Regenerates crates/user-registry/src/common-passwords.txt, the list of
# common passwords the user registry refuses (user_registry.password_policy.
# reject_common).
#
# Source: the list Django ships (django/contrib/auth/common-passwords.txt.gz,
# 20,000 common passwords compiled by Royce Williams), from the Django wheel
# on PyPI, under Django's BSD-3-Clause licence; plus a few that matter to
# Roster in particular. Lowercased (the check is case-insensitive),
# deduplicated and sorted bytewise, so the service can binary-search it.
set -euo pipefail

readonly DJANGO_VERSION=5.2.19
readonly OUT="$(cd "$(dirname "$0")/.." && pwd)/crates/user-registry/src/common-passwords.txt"

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

python3 -m pip download --quiet --no-deps --only-binary=:all: \
	--dest "$tmp" "django==${DJANGO_VERSION}"
python3 - "$tmp" "$OUT" <<'PY'
import glob, gzip, sys, zipfile

tmp, out = sys.argv[1], sys.argv[2]
(wheel,) = glob.glob(f"{tmp}/*.whl")
with zipfile.ZipFile(wheel) as zf:
    raw = zf.read("django/contrib/auth/common-passwords.txt.gz")
words = gzip.decompress(raw).decode("utf-8").splitlines()
# Guessed first against Roster and The Things Stack installations.
words += ["roster123", "roster2024", "lorawan123", "thethingsstack", "toor",
          "guest123", "summer2024", "winter2024", "spring2025", "autumn2025"]
entries = sorted({w.strip().lower() for w in words if w.strip()},
                 key=lambda w: w.encode("utf-8"))
with open(out, "w", encoding="utf-8") as f:
    f.write("\n".join(entries) + "\n")
print(f"{len(entries)} entries written to {out}", file=sys.stderr)
PY
