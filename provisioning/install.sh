#!/usr/bin/env bash
# Install store-edge on a box: Raspberry Pi OS bookworm (arm64), or Debian 12 (x86-64).
#
#   sudo provisioning/install.sh                 # this machine
#   sudo provisioning/install.sh --root DIR      # into an image or a test tree (no apt, no start)
#
# What it does, each step only when it is not done already (a second run changes nothing
# and says "0 changes"):
#   1. apt packages (python3, venv, libzbar0, CJK font...)      [skipped with --root]
#   2. the service user store-edge (groups dialout, lp, video, store-edge-api) and the UI
#      user cashier (group store-edge-api: the local API socket)
#   3. a venv under /opt/store-edge/.venv with store-edge installed (again only when the
#      source changed: its hash is kept in /opt/store-edge/source.sha256)
#   4. /etc/store-edge (0750) and /var/lib/store-edge (0700, the service user's)
#   5. the units, the journald drop-in (log limits), enabled; started or restarted only
#      when systemd runs and something changed (never in a --root tree)
# STORE_EDGE_PIP_ARGS adds pip options (the tests pass --no-deps to skip the big wheels).
set -euo pipefail

ROOT=/
SRC="$(cd "$(dirname "$0")/.." && pwd)"
TTY=tty1
while (($#)); do
  case "$1" in
    --root) ROOT="$2"; shift 2 ;;
    --source) SRC="$2"; shift 2 ;;
    --tty) TTY="$2"; shift 2 ;;
    -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
    *) echo "install: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
[ "$(id -u)" -eq 0 ] || { echo "install: run as root (sudo)" >&2; exit 2; }
R="${ROOT%/}"                    # "" for the live system
PREFIX=/opt/store-edge
VENV="$PREFIX/.venv"
USER_NAME=store-edge
UI_USER=cashier
DEVICE_GROUPS=(dialout lp video)  # serial scanners, USB printers, cameras
API_GROUP=store-edge-api  # who may use the daemon's local API socket: the daemon and the UI
PACKAGES=(python3 python3-venv python3-dev gcc libzbar0 fonts-wqy-microhei)
SOURCES=(pyproject.toml README.md cli edge edged drivers sync ui hq provisioning)
changes=0

note() { echo "install: $*"; changes=$((changes + 1)); }

# -- 1. packages ----------------------------------------------------------------------------
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  if [ -z "$R" ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}"
    note "installed ${missing[*]}"
  else
    echo "install: --root tree: apt packages not installed (missing on this host: ${missing[*]})"
  fi
fi

# -- 2. users and groups (in $R/etc, so a --root tree gets its own) ------------------------
rootopt=()
[ -z "$R" ] || rootopt=(--root "$ROOT")
has_group() { grep -q "^$1:" "$R/etc/group"; }
has_user() { grep -q "^$1:" "$R/etc/passwd"; }
in_group() { grep -Eq "^$2:[^:]*:[^:]*:(.*,)?$1(,|$)" "$R/etc/group"; }
for g in "${DEVICE_GROUPS[@]}" "$API_GROUP"; do
  has_group "$g" || { groupadd "${rootopt[@]}" --system "$g"; note "group $g"; }
done
if ! has_user "$USER_NAME"; then
  useradd "${rootopt[@]}" --system --user-group --no-create-home --home-dir /var/lib/store-edge \
    --shell /usr/sbin/nologin --comment "store-edge daemon" "$USER_NAME"
  note "user $USER_NAME"
fi
for g in "${DEVICE_GROUPS[@]}" "$API_GROUP"; do
  in_group "$USER_NAME" "$g" || { usermod "${rootopt[@]}" -a -G "$g" "$USER_NAME"; note "$USER_NAME in $g"; }
done
if ! has_user "$UI_USER"; then
  useradd "${rootopt[@]}" --system --user-group --no-create-home --home-dir /nonexistent \
    --shell /usr/sbin/nologin --comment "store-edge cashier UI" "$UI_USER"
  note "user $UI_USER"
fi
in_group "$UI_USER" "$API_GROUP" || { usermod "${rootopt[@]}" -a -G "$API_GROUP" "$UI_USER"; note "$UI_USER in $API_GROUP"; }
id_of() { awk -F: -v n="$2" '$1 == n { print $3 }' "$R/etc/$1"; }

# -- 3. the venv and the software ------------------------------------------------------------
if [ ! -x "$R$VENV/bin/python" ]; then
  python3 -m venv "$R$VENV"
  note "venv $VENV"
fi
hash="$(cd "$SRC" && find "${SOURCES[@]}" -type f ! -name '*.pyc' ! -path '*/__pycache__/*' \
          -print0 | LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum | cut -d' ' -f1)"
if [ "$(cat "$R$PREFIX/source.sha256" 2>/dev/null)" != "$hash" ]; then
  # Built from a copy: pip builds in the tree it is given, and the source stays clean.
  stage="$(mktemp -d)"
  trap 'rm -rf "$stage"' EXIT
  (cd "$SRC" && tar -cf - --exclude='__pycache__' "${SOURCES[@]}") | tar -C "$stage" -xf -
  # shellcheck disable=SC2086  # STORE_EDGE_PIP_ARGS is a list of options
  "$R$VENV/bin/pip" install -q --disable-pip-version-check ${STORE_EDGE_PIP_ARGS:-} "$stage"
  echo "$hash" > "$R$PREFIX/source.sha256"
  note "store-edge installed from $SRC"
fi

# -- 4. directories ----------------------------------------------------------------------------
ensure_dir() {  # path mode user group
  local path="$R$1" uid gid
  uid="$(id_of passwd "$3")"; gid="$(id_of group "$4")"
  if [ ! -d "$path" ]; then mkdir -p "$path"; note "directory $1"; fi
  if [ "$(stat -c '%a %u %g' "$path")" != "$2 $uid $gid" ]; then
    chmod "$2" "$path"; chown "$uid:$gid" "$path"; note "$1 mode $2 owner $3:$4"
  fi
}
ensure_dir /etc/store-edge 750 root "$USER_NAME"
ensure_dir /var/lib/store-edge 700 "$USER_NAME" "$USER_NAME"

# -- 5. units, journald limits, docs ---------------------------------------------------------
units_changed=0
put() {  # source destination mode
  if ! cmp -s "$1" "$R$2"; then
    install -D -m "$3" "$1" "$R$2"
    note "$2"
    units_changed=1
  fi
}
put "$SRC/systemd/store-edge.service" /etc/systemd/system/store-edge.service 644
put "$SRC/systemd/store-edge-ui@.service" /etc/systemd/system/store-edge-ui@.service 644
put "$SRC/systemd/journald.conf.d/store-edge.conf" /etc/systemd/journald.conf.d/store-edge.conf 644
for doc in "$SRC"/docs/*.md; do
  cmp -s "$doc" "$R$PREFIX/docs/$(basename "$doc")" ||
    { install -D -m 644 "$doc" "$R$PREFIX/docs/$(basename "$doc")"; note "docs/$(basename "$doc")"; }
done

UNITS=(store-edge.service "store-edge-ui@$TTY.service")
live=0
[ -z "$R" ] && [ -d /run/systemd/system ] && live=1
for unit in "${UNITS[@]}"; do
  if [ ! -L "$R/etc/systemd/system/multi-user.target.wants/$unit" ]; then
    if ((live)); then systemctl enable -q "$unit"; else systemctl --root="$ROOT" enable -q "$unit"; fi
    note "enabled $unit"
  fi
done
# The cashier UI owns the console: no login prompt fighting it for tty1.
if [ -L "$R/etc/systemd/system/getty.target.wants/getty@$TTY.service" ]; then
  if ((live)); then systemctl disable -q "getty@$TTY.service"; else
    systemctl --root="$ROOT" disable -q "getty@$TTY.service"; fi
  note "disabled getty@$TTY.service"
fi
if ((live)) && ((units_changed)); then
  systemctl daemon-reload
  systemctl force-reload systemd-journald
  systemctl restart "${UNITS[@]}"
  note "restarted ${UNITS[*]}"
elif ! ((live)); then
  echo "install: systemd is not running here: units enabled, not started"
fi
echo "install: done, $changes change(s)"
