#!/usr/bin/env bash
# Restores an archive made by scripts/backup.sh: checks its checksums, puts the data directory back and, when the
# archive holds a PostgreSQL dump and DATABASE_URL is set, restores the database with pg_restore.
#
#   scripts/restore.sh [--data-dir DIR] [--upload-dir DIR] [--force] ARCHIVE
#
# The server must be stopped (the script takes the data dir's lock, as backup.sh does). The target data dir must
# be empty or absent; with --force a non-empty one is moved aside to DIR.before-restore-<time>, never deleted.
# Start the server afterwards: it replays any journal the backup carried and compacts it into the JSON files.
# With the archive's PostgreSQL dump, pg_restore --clean replaces the objects it contains, in one transaction.
# Environment: FLUX_DATA_DIR, FLUX_UPLOAD_DIR, DATABASE_URL (optional).
# Exit codes: 0 done, 1 failure, 2 usage or a bad archive, 3 a server holds the data dir.
set -euo pipefail

die() { echo "restore.sh: $1" >&2; exit "${2:-1}"; }
usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }

DATA_DIR=${FLUX_DATA_DIR:-./data}
UPLOAD_DIR=${FLUX_UPLOAD_DIR:-}
FORCE=0
ARCHIVE=""
while [ $# -gt 0 ]; do
  case "$1" in
    --data-dir) DATA_DIR=${2:?--data-dir needs a value}; shift 2 ;;
    --upload-dir) UPLOAD_DIR=${2:?--upload-dir needs a value}; shift 2 ;;
    --force) FORCE=1; shift ;;
    -h|--help) usage; exit 0 ;;
    -*) usage >&2; exit 2 ;;
    *) [ -z "$ARCHIVE" ] || { usage >&2; exit 2; }; ARCHIVE=$1; shift ;;
  esac
done
[ -n "$ARCHIVE" ] || { usage >&2; exit 2; }
[ -f "$ARCHIVE" ] || die "$ARCHIVE: no such file" 2
for tool in flock tar sha256sum; do
  command -v "$tool" >/dev/null || die "$tool is required"
done

STAGE=$(mktemp -d "${TMPDIR:-/tmp}/fluxstudio-restore.XXXXXX")
trap 'rm -rf "$STAGE"' EXIT
tar -C "$STAGE" -xzpf "$ARCHIVE" || die "$ARCHIVE is not a readable backup archive" 2
[ -f "$STAGE/MANIFEST" ] && head -n1 "$STAGE/MANIFEST" | grep -q '^fluxstudio-backup 1$' \
  || die "$ARCHIVE is not a fluxstudio backup (no MANIFEST)" 2
(cd "$STAGE" && sha256sum --quiet -c SHA256SUMS) || die "$ARCHIVE is damaged: checksum mismatch" 2
[ -d "$STAGE/data" ] || die "$ARCHIVE has no data directory" 2

mkdir -p "$DATA_DIR"
DATA_DIR=$(cd "$DATA_DIR" && pwd)
exec 9>>"$DATA_DIR/.lock"
flock -n 9 || die "a fluxstudio server is running on $DATA_DIR; stop it first, e.g. systemctl stop fluxstudio" 3

if [ -n "$(ls -A "$DATA_DIR" | grep -v -x -e .lock || true)" ]; then
  [ "$FORCE" = 1 ] || die "$DATA_DIR is not empty; use --force to move its content aside first" 2
  ASIDE="$DATA_DIR.before-restore-$(date -u +%Y%m%dT%H%M%SZ)"
  mkdir "$ASIDE"
  # Moving the entries (not the directory) keeps our lock on $DATA_DIR/.lock valid throughout.
  find "$DATA_DIR" -mindepth 1 -maxdepth 1 ! -name .lock -exec mv -t "$ASIDE" {} +
  echo "previous content of $DATA_DIR moved to $ASIDE"
fi
tar -C "$STAGE/data" -cf - . | tar -C "$DATA_DIR" -xpf -

if [ -d "$STAGE/uploads-external" ]; then
  [ -n "$UPLOAD_DIR" ] || UPLOAD_DIR=$(sed -n 's/^upload-dir: //p' "$STAGE/MANIFEST")
  mkdir -p "$UPLOAD_DIR"
  tar -C "$STAGE/uploads-external" -cf - . | tar -C "$UPLOAD_DIR" -xpf -
  echo "uploads restored to $UPLOAD_DIR"
fi

if [ -f "$STAGE/postgres.dump" ]; then
  if [ -n "${DATABASE_URL:-}" ]; then
    command -v pg_restore >/dev/null || die "pg_restore is required to restore the database"
    pg_restore --clean --if-exists --no-owner --no-privileges --single-transaction --dbname "$DATABASE_URL" \
      "$STAGE/postgres.dump" || die "pg_restore failed; the database is unchanged (single transaction)"
    echo "database restored"
  else
    echo "restore.sh: warning: the archive holds a PostgreSQL dump; set DATABASE_URL to restore it" >&2
  fi
fi
echo "restored $ARCHIVE into $DATA_DIR; start the server to replay the journal"
