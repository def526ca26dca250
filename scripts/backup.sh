#!/usr/bin/env bash
# Backs up a Flux Studio deployment into one archive: the data directory (JSON files, journal, activity files,
# uploads, generated JWT secret, store state) and, when DATABASE_URL is set, a pg_dump of the PostgreSQL database.
#
#   scripts/backup.sh [--data-dir DIR] [--upload-dir DIR] [--output FILE]
#
# Consistency. The JSON store rewrites its files and drops journal segments whenever it compacts, so a copy taken
# while a server runs could mix two snapshots. This script therefore takes the data dir's lock (`.lock`, the flock
# the server holds while it runs) for the whole copy: with a server running it refuses and asks for the server to be
# stopped (`systemctl stop fluxstudio`: SIGTERM drains requests and compacts), and no server can start mid-copy.
# The journal is copied with the files: after an unclean stop (kill -9, power loss) the acknowledged writes that
# only the journal holds are replayed when the restored directory is first opened. PostgreSQL needs no stop:
# pg_dump reads one consistent snapshot while the database is in use.
#
# The archive contains password hashes and possibly `.jwt-secret`: it is created with mode 0600; keep it so.
# Environment: FLUX_DATA_DIR, FLUX_UPLOAD_DIR (when outside the data dir), DATABASE_URL (optional).
# Exit codes: 0 done, 1 failure, 2 usage, 3 a server holds the data dir.
set -euo pipefail

die() { echo "backup.sh: $1" >&2; exit "${2:-1}"; }
usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }

DATA_DIR=${FLUX_DATA_DIR:-./data}
UPLOAD_DIR=${FLUX_UPLOAD_DIR:-}
OUTPUT="fluxstudio-backup-$(date -u +%Y%m%dT%H%M%SZ).tar.gz"
while [ $# -gt 0 ]; do
  case "$1" in
    --data-dir) DATA_DIR=${2:?--data-dir needs a value}; shift 2 ;;
    --upload-dir) UPLOAD_DIR=${2:?--upload-dir needs a value}; shift 2 ;;
    -o|--output) OUTPUT=${2:?--output needs a value}; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; exit 2 ;;
  esac
done

[ -d "$DATA_DIR" ] || die "data dir $DATA_DIR does not exist" 2
DATA_DIR=$(cd "$DATA_DIR" && pwd)
[ -e "$OUTPUT" ] && die "$OUTPUT already exists" 2
for tool in flock tar sha256sum; do
  command -v "$tool" >/dev/null || die "$tool is required"
done

# The server's single-instance lock, held until this script exits.
exec 9>>"$DATA_DIR/.lock"
flock -n 9 || die "a fluxstudio server is running on $DATA_DIR (pid $(cat "$DATA_DIR/.lock" 2>/dev/null || echo '?')); stop it first, e.g. systemctl stop fluxstudio" 3

STAGE=$(mktemp -d "${TMPDIR:-/tmp}/fluxstudio-backup.XXXXXX")
trap 'rm -rf "$STAGE"' EXIT
umask 077

# Everything but the lock and the control socket, which belong to a running process.
mkdir "$STAGE/data"
tar -C "$DATA_DIR" --exclude=./.lock --exclude=./.control.sock -cf - . | tar -C "$STAGE/data" -xpf -

# Uploads outside the data dir (FLUX_UPLOAD_DIR) travel as uploads-external/.
if [ -n "$UPLOAD_DIR" ] && [ -d "$UPLOAD_DIR" ]; then
  UPLOAD_DIR=$(cd "$UPLOAD_DIR" && pwd)
  case "$UPLOAD_DIR/" in
    "$DATA_DIR"/*) ;;
    *) mkdir "$STAGE/uploads-external"; tar -C "$UPLOAD_DIR" -cf - . | tar -C "$STAGE/uploads-external" -xpf - ;;
  esac
fi

if [ -n "${DATABASE_URL:-}" ]; then
  command -v pg_dump >/dev/null || die "DATABASE_URL is set but pg_dump is not installed"
  # The URL is passed as an argument, never printed: it may hold the password.
  pg_dump --format=custom --no-owner --no-privileges --file "$STAGE/postgres.dump" --dbname "$DATABASE_URL" \
    || die "pg_dump failed"
fi

{
  echo "fluxstudio-backup 1"
  echo "created: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "data-dir: $DATA_DIR"
  if [ -d "$STAGE/uploads-external" ]; then echo "upload-dir: $UPLOAD_DIR"; fi
  if [ -f "$STAGE/postgres.dump" ]; then echo "postgres: postgres.dump"; fi
} > "$STAGE/MANIFEST"
(cd "$STAGE" && find . -type f ! -name SHA256SUMS -print0 | sort -z | xargs -0 -r sha256sum > SHA256SUMS)

tar -C "$STAGE" -czf "$OUTPUT.partial" .
chmod 600 "$OUTPUT.partial"
mv "$OUTPUT.partial" "$OUTPUT"
echo "backup written to $OUTPUT ($(du -h "$OUTPUT" | cut -f1))"
