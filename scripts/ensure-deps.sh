#!/usr/bin/env bash
# Installs the system packages tunneld's demo and tests need when missing:
# OpenSSH's server and client (a real sshd is the test peer), curl and
# Python with venv (demo peers, the Python client suite). Go must already be
# there (1.24+; the machines we use have it): scripts/tools.sh says so if not.
# Safe to run again; does nothing when all are present.
set -euo pipefail

missing=()
[ -x /usr/sbin/sshd ] || missing+=(openssh-server)
command -v ssh >/dev/null 2>&1 || missing+=(openssh-client)
command -v ssh-keygen >/dev/null 2>&1 || missing+=(openssh-client)
command -v curl >/dev/null 2>&1 || missing+=(curl)
command -v python3 >/dev/null 2>&1 || missing+=(python3)
# With --tests, what only the tests need: unix-socket forwards are tested
# against a real PostgreSQL and psql.
if [ "${1:-}" = "--tests" ]; then
  compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || missing+=(postgresql)
  command -v psql >/dev/null 2>&1 || missing+=(postgresql-client)
fi
# The client suites make a venv (Debian splits venv and ensurepip out).
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || missing+=(python3-venv)

if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "==> installing: ${missing[*]}" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
command -v cargo >/dev/null 2>&1 || { echo "cargo is missing: install Rust (https://rustup.rs)" >&2; exit 1; }
