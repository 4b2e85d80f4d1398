#!/bin/sh
# One-step apply from cron: plan, apply and verify in one run, printing nothing when
# there is nothing to do (so cron mails only changes and errors). Install as
# /usr/local/lib/provision/provision-apply.sh (mode 0755) and see crontab in this
# directory.
#
# /etc/provision holds provision.toml (the roster source and protect list) and
# secrets.env (mode 0600, owner provision):
#   MAP_SUPABASE_URL=https://abcd.supabase.co
#   MAP_SUPABASE_SERVICE_ROLE_KEY=...
#
# The log (JSON lines, one per change, with the digest of the plan it executed) holds
# engineers' emails: keep /var/log/provision PRIVATE (mode 0700).
set -eu

cd /etc/provision
set -a
# shellcheck disable=SC1091 # the secrets live on the host, not in this recipe
. /etc/provision/secrets.env
set +a

# flock: two runs never overlap. A run that finds the lock taken exits 75 (EX_TEMPFAIL)
# at once, so cron mails it: a run still going an hour later deserves a look.
exec flock --nonblock --conflict-exit-code 75 /run/lock/provision.lock \
  provision apply --yes --quiet --log /var/log/provision/apply.jsonl --color never
