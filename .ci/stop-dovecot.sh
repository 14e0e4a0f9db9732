#!/usr/bin/env bash
# Stop the Dovecot server started by start-dovecot.sh (same PYCRM_IMAP_DIR) and delete its files.
# Safe in an EXIT trap: with nothing to stop it exits 0. It only deletes a dir with its marker.
set -u
dir=${PYCRM_IMAP_DIR:-${TMPDIR:-/tmp}/pycrm-test-imap-$(id -u)}
[ -f "$dir/.pycrm-test-imap" ] || exit 0
if [ -f "$dir/run/master.pid" ]; then
  pid=$(cat "$dir/run/master.pid")
  kill "$pid" 2>/dev/null
  for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
fi
rm -rf "$dir"
exit 0
