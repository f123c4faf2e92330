#!/usr/bin/env bash
# System packages store-edge needs on Debian (bookworm), installed only when missing.
# Idempotent and quiet when everything is there; needs root (or sudo) otherwise.
set -euo pipefail
# postgresql: the server binaries the HQ tests start on loopback (provisioning/localpostgres.py).
# chromium + chromium-driver: the customer pages' browser tests (Playwright drives this one).
# systemd: systemd-analyze and systemctl for the unit and install tests (not started);
# passwd: useradd/usermod, which provisioning/install.sh runs into a test tree.
# ejabberd: a clustered MQTT broker (two nodes on loopback) for the cluster tests.
# faketime: libfaketime moves the daemon's wall clock by hours in the fault suite (tests/system).
PACKAGES=(make python3 python3-venv python3-dev gcc libzbar0 mosquitto fonts-wqy-microhei
          postgresql chromium chromium-driver systemd passwd ejabberd faketime)
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "bootstrap: installing ${missing[*]}"
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
  # The packaged ejabberd service is not used (the cluster tests start their own nodes,
  # provisioning/ejabberdcluster.py): where systemd started it, stop it and keep it off.
  if [[ " ${missing[*]} " == *" ejabberd "* ]] && command -v systemctl >/dev/null \
      && [ -d /run/systemd/system ]; then
    $sudo systemctl disable --now ejabberd >/dev/null 2>&1 || true
  fi
fi
# The packaged mosquitto service is not used: tests and the demo start their own broker.
