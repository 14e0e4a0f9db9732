#!/usr/bin/env bash
# Start a throwaway Dovecot IMAP server for tests, listening on 127.0.0.1 only.
#
# stdout gets exactly one line, for the caller to eval:
#   export PYCRM_TEST_IMAP_URL=imap://pycrm:PASSWORD@127.0.0.1:PORT/INBOX
# Progress and errors go to stderr. Stop it with stop-dovecot.sh (same environment).
#
# Everything lives in one state dir: its own dovecot.conf (no file of /etc/dovecot
# is read), a passwd-file with the one user, and that user's Maildir. Plain-text
# login without TLS is allowed: the server listens on the loopback address only.
# No system service is started, stopped or changed. Running it again while the
# server answers prints the same line; a stale server is cleared and started anew.
#
# Knobs: PYCRM_IMAP_DIR  state dir (default ${TMPDIR:-/tmp}/pycrm-test-imap-UID)
#        PYCRM_IMAP_USER login name (default pycrm), PYCRM_IMAP_PASSWORD (default: random)
# As root: installs dovecot-imapd from Debian packages if it is missing, and runs
# the mail processes as nobody. As another user: runs every process as that user.
set -euo pipefail
dir=${PYCRM_IMAP_DIR:-${TMPDIR:-/tmp}/pycrm-test-imap-$(id -u)}
user=${PYCRM_IMAP_USER:-pycrm}
log() { printf 'start-dovecot: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }
[[ $user =~ ^[a-z][a-z0-9_]*$ ]] || die "PYCRM_IMAP_USER must match [a-z][a-z0-9_]*"

if ! command -v dovecot >/dev/null 2>&1 || [ ! -x /usr/lib/dovecot/imap ]; then
  [ "$(id -u)" = 0 ] || die "dovecot is not installed; as root run: apt-get install -y dovecot-imapd"
  log "installing dovecot-imapd from Debian packages"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  # policy-rc.d or not: the package's own service is stopped again below if it started.
  apt-get install -y -qq --no-install-recommends dovecot-imapd >&2
fi

answers() {  # does an IMAP server greet on 127.0.0.1:$1?
  python3 - "$1" <<'EOF' >/dev/null 2>&1
import socket, sys
with socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=2) as s:
    assert s.recv(64).startswith(b"* OK")
EOF
}

url() { echo "export PYCRM_TEST_IMAP_URL=imap://$user:$(cat "$dir/password")@127.0.0.1:$(cat "$dir/port")/INBOX"; }

if [ -f "$dir/.pycrm-test-imap" ] && [ -f "$dir/port" ] && answers "$(cat "$dir/port")"; then
  url; exit 0
fi
if [ -e "$dir" ]; then
  [ -f "$dir/.pycrm-test-imap" ] || die "$dir exists and is not a test IMAP state dir; remove it or set PYCRM_IMAP_DIR"
  log "clearing a stale server in $dir"
  [ -f "$dir/run/master.pid" ] && kill "$(cat "$dir/run/master.pid")" 2>/dev/null || true
  sleep 0.2
  rm -rf "$dir"
fi
mkdir -p "$dir/run" "$dir/state" "$dir/home/$user"
touch "$dir/.pycrm-test-imap"
chmod 755 "$dir"

if [ "$(id -u)" = 0 ]; then
  mail_uid=$(id -u nobody) mail_gid=$(id -g nobody)
  internal=dovecot login=dovenull chroot_login=login
else
  mail_uid=$(id -u) mail_gid=$(id -g)
  internal=$(id -un) login=$(id -un) chroot_login=
fi
chown -R "$mail_uid:$mail_gid" "$dir/home"
password=${PYCRM_IMAP_PASSWORD:-$(python3 -c 'import secrets; print(secrets.token_hex(12))')}
[[ $password =~ ^[A-Za-z0-9._~-]+$ ]] || die "PYCRM_IMAP_PASSWORD may hold only letters, digits and . _ ~ -"
printf '%s\n' "$password" >"$dir/password"
printf '%s:{PLAIN}%s:%s:%s::%s::\n' "$user" "$password" "$mail_uid" "$mail_gid" "$dir/home/$user" >"$dir/passwd"
chmod 644 "$dir/passwd"

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cat >"$dir/dovecot.conf" <<EOF
# Written by start-dovecot.sh for pycrm's tests; deleted by stop-dovecot.sh.
base_dir = $dir/run
state_dir = $dir/state
instance_name = pycrm-test-imap-$port
log_path = $dir/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
default_internal_user = $internal
default_login_user = $login
first_valid_uid = 1
mail_location = maildir:~/Maildir
passdb {
  driver = passwd-file
  args = scheme=PLAIN username_format=%u $dir/passwd
}
userdb {
  driver = passwd-file
  args = username_format=%u $dir/passwd
}
namespace inbox {
  inbox = yes
  separator = /
}
service imap-login {
  chroot = $chroot_login
  inet_listener imap {
    address = 127.0.0.1
    port = $port
  }
  inet_listener imaps {
    port = 0
  }
}
service pop3-login {
  chroot = $chroot_login
}
service submission-login {
  chroot = $chroot_login
}
service anvil {
  chroot =
}
EOF
dovecot -c "$dir/dovecot.conf" >&2 || die "dovecot did not start (see $dir/dovecot.log)"
for _ in $(seq 50); do answers "$port" && break; sleep 0.1; done
answers "$port" || die "dovecot did not answer on port $port (see $dir/dovecot.log)"
echo "$port" >"$dir/port"
log "dovecot on 127.0.0.1:$port, user $user, mail in $dir/home/$user/Maildir"
url
