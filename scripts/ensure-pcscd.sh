#!/usr/bin/env bash
# Make sure pcscd runs with the vpcd virtual reader listening (TCP 35963 = 0x8C7B).
set -euo pipefail
vpcd_listening() { grep -qiE ':8C7B [0-9A-F:]+ 0A' /proc/net/tcp /proc/net/tcp6 2>/dev/null; }
wait_for_vpcd() {
  for _ in $(seq 1 50); do vpcd_listening && return 0; sleep 0.1; done
  return 1
}
if pgrep -x pcscd >/dev/null; then
  vpcd_listening && exit 0
  # Running, but started before vpcd was installed: restart so it loads the driver.
  pkill -x pcscd || true
  for _ in $(seq 1 50); do pgrep -x pcscd >/dev/null || break; sleep 0.1; done
fi
mkdir -p /run/pcscd
pcscd
wait_for_vpcd || { echo "pcscd started but the vpcd reader is not listening on 35963" >&2; exit 1; }
echo "pcscd running with vpcd on 127.0.0.1:35963"
