#!/usr/bin/env bash
# The command-line tour behind `make tour`: HQ makes keys, a box is set up, codes are issued and
# redeemed, a card is minted and checked as HQ's landing page would. Everything lives in
# ./demo-home/tour (removed and recreated on each run).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
root="$PWD/demo-home/tour"
rm -rf "$root"
export EDGE_HQ_HOME="$root/hq" EDGE_HOME="$root/box"
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
run() { printf '$ %s\n' "$*"; "$@" || printf '(exit %s)\n' "$?"; }

step "HQ makes a signing key and exports the trust list"
run edge-hq keygen --key-id HQ1 --purposes coupon,pickup,config
edge-hq trust > "$root/trust.json"

step "A box for store BJ001 is initialised and registered at HQ"
run edge init --store BJ001 --device BJ001-T1 --name "望京店" --trust "$root/trust.json"
pub=$(edge init --help >/dev/null; python -c "import nacl.signing,pathlib;print(bytes(nacl.signing.SigningKey(bytes.fromhex(pathlib.Path('$EDGE_HOME/device.key').read_text().strip())).verify_key).hex())")
run edge-hq register-device --device BJ001-T1 --store BJ001 --public-key "$pub"

step "HQ issues a livestream coupon (free coffee) and a pickup code"
coupon=$(edge-hq issue coupon --id LIVE-0001 --campaign LIVE1125 --benefit "free:咖啡一杯" --png "$root/coupon.png")
pickup=$(edge-hq issue pickup --order ORD-88 --store BJ001 --number 0815 --items "吐司x2 牛角包x1" --customer "王*")
echo "coupon: $coupon"
echo "pickup: $pickup  (QR written to $root/coupon.png)"

step "The cashier redeems the coupon, then the same coupon again"
run edge redeem "$coupon" --till T1
run edge redeem "$coupon" --till T1

step "The pickup code; then a forged copy; then someone's EAN-13"
run edge redeem "$pickup" --till T1
forged="${coupon%?}$( [ "${coupon: -1}" = "0" ] && echo 1 || echo 0)"
run edge redeem "$forged"
run edge redeem 6901234567892

step "The first redemption is voided, and the coupon works again"
run edge void 1 --reason "顾客改用现金"
run edge redeem "$coupon" --till T2

step "A packaging card is minted, and HQ's landing page checks it offline"
url=$(edge card --receipt R20261125-0042)
echo "$url"
run edge-hq verify-card "$url"

step "Events waiting to sync to HQ"
run edge events --limit 20
