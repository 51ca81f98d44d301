#!/usr/bin/env bash
# Test set-up for the remote-worker tests: make sure an OpenSSH server binary (/usr/sbin/sshd)
# is there. The tests run their own sshd on 127.0.0.1 (own config, port, host key and client
# key in a temporary folder); nothing here starts a server or opens a port.
# Installs Debian's openssh-server when running as root with apt-get; otherwise it only says
# why not, and the remote-worker tests skip with that reason. Never fails the caller.
set -uo pipefail
if [ -x /usr/sbin/sshd ]; then
  exit 0
fi
if [ "$(id -u)" != "0" ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "note: no /usr/sbin/sshd and no root apt-get to install it; the SSH worker tests will be skipped" >&2
  exit 0
fi
echo "Installing openssh-server (for the SSH worker tests)" >&2
# Keep the package from starting a system-wide sshd on port 22 (Debian's policy-rc.d hook).
made_policy=""
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d && made_policy=1
fi
export DEBIAN_FRONTEND=noninteractive
if ! apt-get install -y -qq --no-install-recommends openssh-server openssh-client >/dev/null 2>&1; then
  apt-get update -qq >/dev/null 2>&1 || true
  apt-get install -y -qq --no-install-recommends openssh-server openssh-client >/dev/null 2>&1 \
    || echo "warning: could not install openssh-server; the SSH worker tests will be skipped" >&2
fi
[ -n "$made_policy" ] && rm -f /usr/sbin/policy-rc.d
exit 0
