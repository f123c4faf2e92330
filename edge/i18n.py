"""The one catalogue of words shown to people: Chinese by default, English available.

Every user-facing string of the box (verdicts, reasons, the cashier UI's labels) is a key
here with a ``zh`` and an ``en`` text; :func:`t` formats one. Keeping them in one table
makes a missing translation a test failure rather than a blank on the counter.
"""

from __future__ import annotations

import time
from typing import Any

from edge.verdict import Reason, Verdict

LANGS = ("zh", "en")
DEFAULT_LANG = "zh"

CATALOGUE: dict[str, dict[str, str]] = {
    "accepted": {"zh": "通过", "en": "ACCEPTED"},
    "rejected": {"zh": "拒绝", "en": "REJECTED"},
    "clock_unsure": {"zh": "时钟未校准，时间可能不准", "en": "Clock not verified: times may be off"},
    # benefits
    "benefit.free_item": {"zh": "免费{item}{count}", "en": "Free {item}{count}"},
    "benefit.percent_price": {"zh": "{zhe}折", "en": "{off}% off"},
    "benefit.amount_off": {"zh": "减{yuan}元", "en": "{yuan} yuan off"},
    "pickup.ok": {"zh": "取货 {number}号：{items}（{customer}）",
                  "en": "Pickup #{number}: {items} ({customer})"},
    "pickup.late": {"zh": "已过取货时间", "en": "Past the pickup window"},
    "uses_left": {"zh": "还可使用{n}次", "en": "{n} uses left"},
    # reasons: what happened, then what to do
    "reason.bad_format": {"zh": "无法识别的码（{detail}）", "en": "Not a code we know ({detail})"},
    "reason.forged": {"zh": "签名无效：码可能被伪造或改动",
                      "en": "Signature invalid: the code is forged or altered"},
    "reason.unknown_key": {"zh": "签发密钥未知（{key_id}）", "en": "Unknown signing key ({key_id})"},
    "reason.key_expired": {"zh": "签发密钥已过期或无此用途（{key_id}）",
                           "en": "Signing key expired or not for this use ({key_id})"},
    "reason.not_yet_valid": {"zh": "尚未生效，{valid_from} 起可用",
                             "en": "Not valid until {valid_from}"},
    "reason.expired": {"zh": "已过期（有效至 {valid_until}）",
                       "en": "Expired (valid until {valid_until})"},
    "reason.wrong_store": {"zh": "本店不可用（适用门店：{stores}）",
                           "en": "Not for this store (stores: {stores})"},
    "reason.campaign_paused": {"zh": "活动已暂停", "en": "Campaign paused"},
    "reason.campaign_revoked": {"zh": "活动已撤销", "en": "Campaign revoked"},
    "reason.coupon_revoked": {"zh": "此券已被总部作废", "en": "Coupon revoked by HQ"},
    "reason.already_used_here": {"zh": "已于 {used_at} 在本店 {used_till} 使用",
                                 "en": "Already used here at {used_at}, {used_till}"},
    "reason.used_at_other_store": {"zh": "已于 {used_at} 在 {used_store} 门店使用",
                                   "en": "Already used at store {used_store} at {used_at}"},
    "reason.order_cancelled": {"zh": "订单已取消", "en": "Order cancelled"},
    "reason.already_collected": {"zh": "已于 {used_at} 取货（{used_till}）",
                                 "en": "Already collected at {used_at} ({used_till})"},
    "reason.outside_pickup_window": {"zh": "不在取货时间内（{window}）",
                                     "en": "Outside the pickup window ({window})"},
    "reason.unknown_pickup_number": {"zh": "本店没有取货号 {number}",
                                     "en": "No pickup number {number} at this store"},
    "reason.not_redeemable": {"zh": "这是包装卡二维码，请顾客用手机扫码入群",
                              "en": "This is a packaging-card QR: the customer scans it with a phone"},
    "advice.bad_format": {"zh": "请重扫，或手动输入取货号", "en": "Scan again, or type the pickup number"},
    "advice.call_manager": {"zh": "请勿给予优惠，必要时联系店长",
                            "en": "Do not give the benefit; call the manager if needed"},
    "advice.none": {"zh": "", "en": ""},
    # printed slips (edge.slips)
    "slip.card.serial": {"zh": "卡号 {serial}  {date}", "en": "Card {serial}  {date}"},
    "slip.pickup.title": {"zh": "取货单", "en": "PICKUP SLIP"},
    "slip.pickup.number": {"zh": "取货号 {number}", "en": "Pickup #{number}"},
    "slip.pickup.order": {"zh": "订单：{order_id}", "en": "Order: {order_id}"},
    "slip.pickup.items": {"zh": "商品：", "en": "Items:"},
    "slip.pickup.customer": {"zh": "顾客：{customer}", "en": "Customer: {customer}"},
    "slip.pickup.window": {"zh": "取货时间：{start} - {end}", "en": "Pickup: {start} - {end}"},
    "slip.redeem.title": {"zh": "核销凭证", "en": "REDEMPTION"},
    "slip.redeem.code": {"zh": "券码：{code_id}", "en": "Code: {code_id}"},
    "slip.redeem.time": {"zh": "时间：{when}", "en": "Time: {when}"},
    "slip.redeem.till": {"zh": "收银台：{till}", "en": "Till: {till}"},
    "slip.redeem.decision": {"zh": "凭证号：{decision_id}", "en": "Receipt no.: {decision_id}"},
    "slip.report.title": {"zh": "营业报表", "en": "DAILY REPORT"},
    "slip.report.period": {"zh": "{start} 至 {end}", "en": "{start} to {end}"},
    "slip.test.title": {"zh": "打印测试页", "en": "PRINTER TEST PAGE"},
    "slip.test.encoding": {"zh": "文字编码：{encoding}", "en": "Text encoding: {encoding}"},
    "slip.printed_at": {"zh": "打印于 {when}", "en": "Printed {when}"},
    # printer state, as the cashier sees it (drivers.printer.PrinterState values)
    "printer.ready": {"zh": "打印机就绪", "en": "Printer ready"},
    "printer.no_paper": {"zh": "打印机缺纸", "en": "Printer out of paper"},
    "printer.cover_open": {"zh": "打印机盖未关", "en": "Printer cover open"},
    "printer.offline": {"zh": "打印机未连接", "en": "Printer not connected"},
    "printer.error": {"zh": "打印机故障", "en": "Printer error"},
    "printer.unknown": {"zh": "打印机状态未知", "en": "Printer status unknown"},
    "printer.waiting": {"zh": "{n} 张待打印", "en": "{n} slips waiting"},
}

_ADVICE = {Reason.BAD_FORMAT: "advice.bad_format", Reason.UNKNOWN_PICKUP_NUMBER:
           "advice.bad_format", Reason.NOT_REDEEMABLE: "advice.none"}


def t(key: str, lang: str = DEFAULT_LANG, **values: Any) -> str:
    """The text for ``key`` in ``lang`` (falling back to Chinese), formatted with ``values``."""
    entry = CATALOGUE[key]
    text = entry.get(lang) or entry[DEFAULT_LANG]
    return text.format(**values) if values else text


def when(ts: float | int | None) -> str:
    """A local ``MM-DD HH:MM`` for a timestamp, as cashiers read it."""
    if not ts:
        return "?"
    return time.strftime("%m-%d %H:%M", time.localtime(float(ts)))


def benefit_text(benefit: dict[str, Any], lang: str = DEFAULT_LANG) -> str:
    """A coupon benefit in plain words: 免费咖啡一杯, 95折, 减5元."""
    kind, value, item = benefit.get("kind"), int(benefit.get("value", 0)), benefit.get("item", "")
    if kind == "free_item":
        count = "" if value <= 1 else (f" x{value}")
        return t("benefit.free_item", lang, item=item, count=count)
    if kind == "percent_price":
        # Shop convention: 80% is "8折", 95% is "95折" (read 九五折), not "9.5折".
        zhe = str(value // 10) if value % 10 == 0 else str(value)
        return t("benefit.percent_price", lang, zhe=zhe, off=100 - value)
    return t("benefit.amount_off", lang, yuan=f"{value / 100:g}")


def verdict_lines(v: Verdict, lang: str = DEFAULT_LANG) -> tuple[str, str, str]:
    """(headline, what, what to do) for a verdict, in ``lang``."""
    f = v.facts
    if v.accepted:
        if v.kind == "pickup":
            what = t("pickup.ok", lang, number=f.get("number", ""), items=f.get("items", ""),
                     customer=f.get("customer", ""))
            if f.get("late"):
                what += " · " + t("pickup.late", lang)
        else:
            what = benefit_text(f.get("benefit", {}), lang)
            if f.get("uses_left"):
                what += " · " + t("uses_left", lang, n=f["uses_left"])
        return t("accepted", lang), what, ""
    assert v.reason is not None
    values = {
        "detail": f.get("detail", ""), "key_id": f.get("key_id", ""),
        "valid_from": when(f.get("valid_from")), "valid_until": when(f.get("valid_until")),
        "stores": ", ".join(f.get("stores", [])), "used_at": when(f.get("used_at")),
        "used_till": f.get("used_till") or "-", "used_store": f.get("used_store", ""),
        "number": f.get("number", ""),
        "window": f"{when(f.get('window_start'))} - {when(f.get('window_end'))}",
    }
    what = t("reason." + v.reason.value, lang, **values)
    advice = t(_ADVICE.get(v.reason, "advice.call_manager"), lang)
    return t("rejected", lang), what, advice
