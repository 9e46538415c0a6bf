#!/usr/bin/env bash
# Debian packages the test suite needs: a real OpenSSH server and client (tests start
# their own sshd on 127.0.0.1), rsync (the sync benchmark compares against it) and
# Chromium's headless shell (the run report is rendered in a real browser).
# Installs only what is missing, so it is instant on a machine that has them.
set -euo pipefail
need=()
command -v /usr/sbin/sshd >/dev/null 2>&1 || need+=(openssh-server)
command -v ssh >/dev/null 2>&1 || need+=(openssh-client)
command -v ssh-keygen >/dev/null 2>&1 || need+=(openssh-client)
command -v rsync >/dev/null 2>&1 || need+=(rsync)
command -v chromium-headless-shell >/dev/null 2>&1 || need+=(chromium-headless-shell)
[ ${#need[@]} -eq 0 ] && exit 0
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "installing system packages: ${need[*]}" >&2
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
