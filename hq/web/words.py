"""The customer pages' words: Chinese by default, English available.

Same shape as the box's catalogue (``edge/i18n.py``): a key with a ``zh`` and an ``en``
text; benefits are worded by ``edge.i18n.benefit_text`` so the page and the till agree.
"""

from __future__ import annotations

import time
from typing import Any

from edge import i18n, tokens

LANGS = ("zh", "en")
DEFAULT_LANG = "zh"

WORDS: dict[str, dict[str, str]] = {
    "workshop.title": {"zh": "活动报名", "en": "Workshop sign-up"},
    "workshop.when": {"zh": "{start} 至 {end}", "en": "{start} to {end}"},
    "workshop.seats": {"zh": "名额 {capacity} 人，剩余 {left} 人", "en": "{capacity} seats, {left} left"},
    "workshop.full": {"zh": "名额已满：现在报名将进入候补，有人取消时按顺序递补",
                      "en": "Full: signing up puts you on the waitlist, moved up in order when someone cancels"},
    "workshop.holder": {"zh": "您的称呼", "en": "Your name"},
    "workshop.party": {"zh": "人数（最多 {max} 人）", "en": "People (at most {max})"},
    "workshop.submit": {"zh": "报名", "en": "Sign up"},
    "workshop.closed": {"zh": "本场活动已停止报名", "en": "This session takes no more sign-ups"},
    "workshop.unknown": {"zh": "没有这场活动", "en": "No such session"},
    "workshop.party_bad": {"zh": "人数须为 1 到 {max}", "en": "People must be 1 to {max}"},
    "workshop.holder_bad": {"zh": "请填写称呼（1-20 个字）", "en": "Give a name (1-20 characters)"},
    "ticket.title": {"zh": "活动票", "en": "Workshop ticket"},
    "ticket.show": {"zh": "到店时向店员出示此码签到（{party}人）", "en": "Show this code at the till to check in ({party} people)"},
    "ticket.waitlist": {"zh": "候补第 {n} 位：有人取消时自动递补，届时此页显示票码",
                        "en": "Waitlist place {n}: moved up automatically when someone cancels; the ticket then shows here"},
    "ticket.cancelled": {"zh": "已取消", "en": "Cancelled"},
    "ticket.session_cancelled": {"zh": "本场活动已取消，票码作废", "en": "This session was cancelled; the ticket is void"},
    "ticket.mine": {"zh": "我的活动", "en": "My workshops"},
    "ticket.held": {"zh": "已报名（{party}人）", "en": "Signed up ({party} people)"},
    "ticket.place": {"zh": "候补第 {n} 位", "en": "Waitlist place {n}"},
    "ticket.cancel": {"zh": "取消报名", "en": "Cancel my sign-up"},
    "ticket.checkin": {"zh": "签到时间：开始前 {early} 分钟至结束后 {late} 分钟",
                       "en": "Check-in: from {early} min before the start to {late} min after the end"},
    "lang.switch": {"zh": "English", "en": "中文"},
    "landing.headline": {"zh": "扫码入群 领新人礼", "en": "Join the group, claim your gift"},
    "landing.gift": {"zh": "新人礼：{gift}", "en": "Welcome gift: {gift}"},
    "landing.no_gift": {"zh": "本店暂时没有新人礼，欢迎加入门店社群。",
                        "en": "No welcome gift here right now; do join the store's group."},
    "landing.claim": {"zh": "立即领取", "en": "Claim it"},
    "landing.once": {"zh": "每张卡只能领取一次", "en": "Each card can be claimed once"},
    "card.bad_format": {"zh": "无法识别这张卡", "en": "This card cannot be read"},
    "card.not_a_card": {"zh": "这不是门店卡片", "en": "This is not a store card"},
    "card.unknown_device": {"zh": "这张卡来自未登记的设备",
                            "en": "This card comes from an unregistered device"},
    "card.wrong_store": {"zh": "这张卡与门店不符", "en": "This card does not match its store"},
    "card.forged": {"zh": "这张卡未通过校验", "en": "This card did not pass the check"},
    "card.expired": {"zh": "这张卡已过期（打印后{days}天内有效）",
                     "en": "This card has expired (good for {days} days after printing)"},
    "card.nothing": {"zh": "没有领取任何礼品。如有疑问，请咨询门店店员。",
                     "en": "Nothing was claimed. Ask the store's staff if in doubt."},
    "card.taken": {"zh": "这张卡已于 {when} 被领取", "en": "This card was already claimed on {when}"},
    "card.taken_hint": {"zh": "每张卡只能领取一次。如果是您领取的，请在“我的券”中查看。",
                        "en": "Each card can be claimed once. If it was you, see My coupons."},
    "campaign.claim": {"zh": "领取优惠券", "en": "Claim the coupon"},
    "campaign.not_active": {"zh": "活动未开始或已结束", "en": "This campaign is not running"},
    "campaign.budget_spent": {"zh": "本次活动的券已经领完了",
                              "en": "All of this campaign's coupons are gone"},
    "campaign.limit_reached": {"zh": "您已领取过本活动的券",
                               "en": "You have had this campaign's coupons already"},
    "campaign.no_gift": {"zh": "本店暂时没有新人礼", "en": "No welcome gift here right now"},
    "coupon.title": {"zh": "您的优惠券", "en": "Your coupon"},
    "coupon.bright": {"zh": "出示时请把屏幕亮度调高", "en": "Turn the brightness up to show it"},
    "coupon.valid": {"zh": "有效期至 {date}", "en": "Valid until {date}"},
    "coupon.code": {"zh": "券号 {id}", "en": "Coupon {id}"},
    "coupon.where": {"zh": "可用门店", "en": "Where it works"},
    "coupon.everywhere": {"zh": "全部门店可用", "en": "Good at every store"},
    "coupon.nearest": {"zh": "按离我最近排序", "en": "Nearest to me first"},
    "coupon.km": {"zh": "{km} 公里", "en": "{km} km"},
    "status.unused": {"zh": "未使用", "en": "Unused"},
    "status.used": {"zh": "{date} 已在{store}使用", "en": "Used at {store} on {date}"},
    "status.expired": {"zh": "已过期", "en": "Expired"},
    "group.join": {"zh": "加入{store}社群", "en": "Join {store}'s group"},
    "group.hint": {"zh": "长按识别二维码，或点此链接入群", "en": "Long-press the QR, or tap the link"},
    "mine.title": {"zh": "我的券", "en": "My coupons"},
    "mine.empty": {"zh": "还没有优惠券", "en": "No coupons yet"},
    "mine.coupons": {"zh": "优惠券", "en": "Coupons"},
    "pickup.title": {"zh": "取货单", "en": "Pickup orders"},
    "pickup.number": {"zh": "取货号", "en": "Pickup number"},
    "pickup.window": {"zh": "取货时间 {start} 至 {end}", "en": "Pick up from {start} to {end}"},
    "pickup.waiting": {"zh": "待取货", "en": "Waiting for you"},
    "pickup.late": {"zh": "已过取货时间，请联系门店", "en": "Past its pickup time: ask the store"},
    "pickup.cancelled": {"zh": "已取消", "en": "Cancelled"},
    "pickup.collected": {"zh": "{date} 已在{store}取货", "en": "Collected at {store} on {date}"},
    "pickup.collected_undated": {"zh": "已取货", "en": "Collected"},
    # -- HQ's dashboard (hq/web/dashboard.py) --
    "hq.title": {"zh": "总部看板", "en": "HQ dashboard"},
    "hq.nav.chain": {"zh": "全链漏斗", "en": "Chain"},
    "hq.nav.store": {"zh": "本店", "en": "My store"},
    "hq.nav.campaigns": {"zh": "活动", "en": "Campaigns"},
    "hq.nav.pickups": {"zh": "自提订单", "en": "Pickups"},
    "hq.nav.boxes": {"zh": "门店设备", "en": "Boxes"},
    "hq.nav.workshops": {"zh": "门店活动课", "en": "Workshops"},
    "hq.login": {"zh": "登录", "en": "Sign in"},
    "hq.logout": {"zh": "退出", "en": "Sign out"},
    "hq.name": {"zh": "用户名", "en": "Name"},
    "hq.password": {"zh": "密码", "en": "Password"},
    "hq.login_failed": {"zh": "用户名或密码错误", "en": "Wrong name or password"},
    "hq.forbidden": {"zh": "无权查看此页面", "en": "This page is not yours to see"},
    "hq.bad_range": {"zh": "日期范围无效：{why}", "en": "Bad date range: {why}"},
    "hq.from": {"zh": "从", "en": "From"},
    "hq.to": {"zh": "至", "en": "to"},
    "hq.apply": {"zh": "查询", "en": "Show"},
    "hq.back": {"zh": "返回全链", "en": "Back to the chain"},
    "hq.store_title": {"zh": "门店 {store}", "en": "Store {store}"},
    "hq.day_title": {"zh": "门店 {store} · {day}", "en": "Store {store} · {day}"},
    "hq.sec.funnel": {"zh": "转化漏斗", "en": "Funnel"},
    "hq.sec.days": {"zh": "每日", "en": "By day"},
    "hq.sec.months": {"zh": "每月", "en": "By month"},
    "hq.sec.stores": {"zh": "各门店", "en": "By store"},
    "hq.sec.campaigns": {"zh": "各活动核销", "en": "Redemptions by campaign"},
    "hq.sec.channels": {"zh": "各渠道核销", "en": "Redemptions by channel"},
    "hq.sec.top": {"zh": "核销最多的门店", "en": "Top stores"},
    "hq.sec.bottom": {"zh": "核销最少的门店", "en": "Bottom stores"},
    "hq.sec.reasons": {"zh": "拒绝原因", "en": "Rejection reasons"},
    "hq.sec.pickups": {"zh": "自提订单", "en": "Pickup orders"},
    "hq.sec.workshops": {"zh": "各场活动：报名、签到、缺席", "en": "Sessions: sign-ups, check-ins, no-shows"},
    "hq.sec.workshop_stores": {"zh": "各门店活动", "en": "Workshops by store"},
    "hq.sec.boxes": {"zh": "设备（有问题的在前）", "en": "Boxes (trouble first)"},
    "hq.step.printed": {"zh": "打印卡片", "en": "Cards printed"},
    "hq.step.claimed": {"zh": "扫码领取", "en": "Claimed"},
    "hq.step.welcome": {"zh": "新人券核销", "en": "Welcome coupon redeemed"},
    "hq.step.came_back": {"zh": "再次到店", "en": "Came back"},
    "hq.col.step": {"zh": "环节", "en": "Step"},
    "hq.col.count": {"zh": "数量", "en": "Count"},
    "hq.col.of_previous": {"zh": "占上一步", "en": "Of previous"},
    "hq.col.of_first": {"zh": "占第一步", "en": "Of first"},
    "hq.col.day": {"zh": "日期", "en": "Day"},
    "hq.col.month": {"zh": "月份", "en": "Month"},
    "hq.col.store": {"zh": "门店", "en": "Store"},
    "hq.col.redeemed": {"zh": "核销", "en": "Redeemed"},
    "hq.col.rejected": {"zh": "拒绝", "en": "Rejected"},
    "hq.col.voided": {"zh": "撤销", "en": "Voided"},
    "hq.col.pickups": {"zh": "自提取货", "en": "Pickups"},
    "hq.col.campaign": {"zh": "活动", "en": "Campaign"},
    "hq.col.name": {"zh": "名称", "en": "Name"},
    "hq.col.budget": {"zh": "预算", "en": "Budget"},
    "hq.col.issued": {"zh": "已发放", "en": "Issued"},
    "hq.col.budget_used": {"zh": "预算使用", "en": "Budget used"},
    "hq.col.channel": {"zh": "渠道", "en": "Channel"},
    "hq.col.reason": {"zh": "原因", "en": "Reason"},
    "hq.col.assigned": {"zh": "分配", "en": "Assigned"},
    "hq.col.on_time": {"zh": "按时取货", "en": "Collected on time"},
    "hq.col.late": {"zh": "逾期取货", "en": "Collected late"},
    "hq.col.not_collected": {"zh": "未取货", "en": "Not collected"},
    "hq.col.waiting": {"zh": "待取货", "en": "Waiting"},
    "hq.col.cancelled": {"zh": "已取消", "en": "Cancelled"},
    "hq.col.online_share": {"zh": "线上订单占比", "en": "Online share"},
    "hq.col.device": {"zh": "设备", "en": "Box"},
    "hq.col.state": {"zh": "状态", "en": "State"},
    "hq.col.last_seen": {"zh": "最近联系", "en": "Last seen"},
    "hq.col.backlog": {"zh": "待同步", "en": "Backlog"},
    "hq.col.config": {"zh": "已应用配置", "en": "Config applied"},
    "hq.col.clock": {"zh": "时钟可信", "en": "Clock trusted"},
    "hq.col.conflicts": {"zh": "冲突", "en": "Conflicts"},
    "hq.col.gaps": {"zh": "缺失序号", "en": "Seq gaps"},
    "hq.col.session": {"zh": "场次", "en": "Session"},
    "hq.col.title": {"zh": "活动", "en": "Title"},
    "hq.col.starts": {"zh": "开始", "en": "Starts"},
    "hq.col.capacity": {"zh": "名额（人）", "en": "Seats"},
    "hq.col.tickets": {"zh": "已报名", "en": "Signed up"},
    "hq.col.seats": {"zh": "报名人数", "en": "People"},
    "hq.col.waitlist": {"zh": "候补", "en": "Waitlist"},
    "hq.col.checked_in": {"zh": "已签到", "en": "Checked in"},
    "hq.col.people_in": {"zh": "到场人数", "en": "People in"},
    "hq.col.no_shows": {"zh": "缺席", "en": "No-shows"},
    "hq.col.sessions": {"zh": "场次数", "en": "Sessions"},
    "hq.col.trouble": {"zh": "问题", "en": "Trouble"},
    "hq.yes": {"zh": "是", "en": "yes"},
    "hq.no": {"zh": "否", "en": "no"},
    "hq.state.online": {"zh": "在线", "en": "online"},
    "hq.state.offline": {"zh": "离线", "en": "offline"},
    "hq.problem.offline": {"zh": "离线", "en": "offline"},
    "hq.problem.silent": {"zh": "失联", "en": "silent"},
    "hq.problem.backlog": {"zh": "积压", "en": "backlog"},
    "hq.problem.alarm": {"zh": "积压告警", "en": "outbox alarm"},
    "hq.problem.clock": {"zh": "时钟不可信", "en": "clock untrusted"},
    "hq.problem.config": {"zh": "配置未应用", "en": "config not applied"},
    "hq.problem.gaps": {"zh": "缺号", "en": "seq gaps"},
    "hq.problem.conflicts": {"zh": "券冲突", "en": "conflicts"},
    "hq.channel.livestream": {"zh": "直播", "en": "livestream"},
    "hq.channel.community": {"zh": "社群", "en": "community"},
    "hq.channel.welcome": {"zh": "新人礼", "en": "welcome"},
    "hq.csv": {"zh": "导出 CSV", "en": "CSV"},
    "hq.sort": {"zh": "排序", "en": "Sort"},
    "phone.label": {"zh": "手机号（选填，用于找回优惠券）",
                    "en": "Phone (optional, to recover your coupons)"},
    "phone.consent": {"zh": "我愿意接收门店优惠信息", "en": "Send me the stores' offers"},
    "phone.save": {"zh": "保存", "en": "Save"},
    "phone.saved": {"zh": "已保存", "en": "Saved"},
    "phone.bad": {"zh": "手机号格式不正确", "en": "That phone number is not valid"},
    "error.csrf": {"zh": "页面已过期，请返回刷新后重试", "en": "This page expired: reload it and try again"},
    "error.rate": {"zh": "操作太频繁，请一分钟后再试", "en": "Too many tries: wait a minute"},
    "error.not_found": {"zh": "页面不存在", "en": "Page not found"},
    "error.busy": {"zh": "系统繁忙，请稍后再试，不会重复领取",
                   "en": "Busy: try again shortly (nothing is claimed twice)"},
}


def t(key: str, lang: str = DEFAULT_LANG, **values: Any) -> str:
    """The text for ``key`` in ``lang`` (falling back to Chinese), formatted with ``values``."""
    entry = WORDS[key]
    text = entry.get(lang) or entry[DEFAULT_LANG]
    return text.format(**values) if values else text


def benefit(b: tokens.Benefit, lang: str) -> str:
    """A benefit in words, as the till says it."""
    return i18n.benefit_text({"kind": b.kind.name.lower(), "value": b.value, "item": b.item},
                             lang if lang in i18n.LANGS else i18n.DEFAULT_LANG)


def date(ts: float | int) -> str:
    """A local ``YYYY-MM-DD HH:MM``."""
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(float(ts)))


def pick_lang(chosen: str | None, accept_language: str) -> str:
    """The page language: the customer's switch, else ``Accept-Language``, else Chinese.

    Of ``zh`` and ``en``, the one ``Accept-Language`` ranks higher wins; neither: Chinese.
    """
    if chosen in LANGS:
        return str(chosen)
    best, best_q = DEFAULT_LANG, 0.0
    for part in accept_language.split(",")[:20]:
        tag, _, params = part.strip().partition(";")
        q = 1.0
        if params.strip().startswith("q="):
            try:
                q = float(params.strip()[2:])
            except ValueError:
                continue
        primary = tag.strip().lower().split("-")[0]
        if primary in LANGS and q > best_q:
            best, best_q = primary, q
    return best
