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
    "ticket.ok": {"zh": "活动签到：{title}（{start}-{end}）{holder} {party}人",
                  "en": "Workshop check-in: {title} ({start}-{end}) {holder}, {party} people"},
    "ticket.partial": {"zh": "票面{ticket_party}人", "en": "ticket for {ticket_party}"},
    # cashier UI (ui/): panes, status bar, keys
    "ui.title": {"zh": "门店助手", "en": "Store Edge"},
    "ui.pane.scan": {"zh": "扫码", "en": "Scan"},
    "ui.pane.pickups": {"zh": "取货", "en": "Pickups"},
    "ui.pane.cards": {"zh": "包装卡", "en": "Cards"},
    "ui.pane.void": {"zh": "撤销", "en": "Void"},
    "ui.pane.report": {"zh": "日报", "en": "Report"},
    "ui.pane.workshops": {"zh": "活动", "en": "Workshops"},
    "ui.workshops.none": {"zh": "今天没有活动", "en": "No workshops today"},
    "ui.workshops.col.time": {"zh": "时间", "en": "Time"},
    "ui.workshops.col.title": {"zh": "活动", "en": "Session"},
    "ui.workshops.col.signed_up": {"zh": "报名", "en": "Signed up"},
    "ui.workshops.col.checked_in": {"zh": "已签到", "en": "Checked in"},
    "ui.workshops.col.status": {"zh": "状态", "en": "Status"},
    "ui.workshops.status.open": {"zh": "进行", "en": "open"},
    "ui.workshops.status.cancelled": {"zh": "已取消", "en": "cancelled"},
    "ui.workshops.code": {"zh": "扫描活动票，回车签到", "en": "Scan a workshop ticket, Enter to check in"},
    "ui.workshops.party": {"zh": "人数（空=票面人数）", "en": "People (empty = ticket's party)"},
    "ui.workshops.hint": {"zh": "先填人数（可不填），再扫票；R：刷新",
                          "en": "Type the number of people (optional), then scan; R: refresh"},
    "ui.workshops.bad_party": {"zh": "人数须为 1-99 的整数", "en": "People must be a whole number 1-99"},
    "ui.key.lang": {"zh": "English", "en": "中文"},
    "ui.key.quit": {"zh": "退出", "en": "Quit"},
    "ui.key.workshops": {"zh": "活动", "en": "Class"},
    "ui.scan.ready": {"zh": "请扫码", "en": "READY TO SCAN"},
    "ui.scan.ready_hint": {"zh": "扫描顾客出示的券码或取货码，或输入取货号后按回车",
                           "en": "Scan the customer's coupon or pickup code, or type a pickup number and Enter"},
    "ui.scan.placeholder": {"zh": "扫码，或输入取货号后回车", "en": "Scan, or type a pickup number and Enter"},
    "ui.scan.history": {"zh": "最近扫码（Tab 选择，回车重看）", "en": "Recent scans (Tab to select, Enter to reopen)"},
    "ui.scan.decision": {"zh": "单号 {id}", "en": "Decision {id}"},
    "ui.scan.not_recorded": {"zh": "未记录", "en": "not recorded"},
    "ui.scan.reopened": {"zh": "回看", "en": "reopened"},
    "ui.scan.failed": {"zh": "未能判定", "en": "NOT DECIDED"},
    "ui.scan.failed_advice": {"zh": "后台服务未响应：请勿给予优惠，稍后重扫",
                              "en": "The box service did not answer: give no benefit, scan again shortly"},
    "ui.scan.storage_full_advice": {"zh": "存储空间已满，本次扫码未记录：请勿给予优惠，请店长清理空间后重扫",
                                    "en": "The box's storage is full and this scan was not recorded: give no benefit; the manager must free space, then scan again"},
    "ui.source.keyboard": {"zh": "键盘", "en": "keyboard"},
    "ui.source.serial": {"zh": "扫码枪", "en": "scanner"},
    "ui.source.camera": {"zh": "摄像头", "en": "camera"},
    "ui.source.cli": {"zh": "命令行", "en": "command line"},
    "ui.source.pickups": {"zh": "取货单", "en": "pickup list"},
    "ui.source.workshops": {"zh": "活动签到", "en": "workshop check-in"},
    "ui.link.down": {"zh": "后台服务未连接，正在自动重连…（{detail}）",
                     "en": "Box service not reachable, reconnecting... ({detail})"},
    "ui.link.waiting": {"zh": "正在连接后台服务…", "en": "Connecting to the box service..."},
    "ui.status.online": {"zh": "在线", "en": "Online"},
    "ui.status.offline": {"zh": "离线", "en": "Offline"},
    "ui.status.ago": {"zh": "{age}前", "en": "{age} ago"},
    "ui.status.never": {"zh": "从未连上", "en": "never"},
    "ui.status.backlog": {"zh": "待同步{n}", "en": "Sync {n}"},
    # Sent (the broker acknowledged them), not yet confirmed by HQ: shown only when some wait.
    "ui.status.unconfirmed": {"zh": "待确认{n}", "en": "Unconfirmed {n}"},
    "ui.status.alarm": {"zh": "积压告警", "en": "OVER LIMIT"},
    "ui.status.printer": {"zh": "打印机", "en": "Printer"},
    "ui.status.jobs": {"zh": "待打{n}", "en": "{n} queued"},
    "ui.status.scanner": {"zh": "扫码枪", "en": "Scan"},
    "ui.status.camera": {"zh": "摄像头", "en": "Cam"},
    "ui.status.clock_ok": {"zh": "时钟可信", "en": "Clock OK"},
    "ui.status.clock_bad": {"zh": "时钟未校准", "en": "Clock unsure"},
    "ui.status.config": {"zh": "配置v{v}", "en": "Cfg v{v}"},
    "ui.status.storage_full": {"zh": "存储已满", "en": "DISK FULL"},
    "ui.status.service_down": {"zh": "服务未连接", "en": "SERVICE DOWN"},
    "ui.dev.ready": {"zh": "就绪", "en": "ready"},
    "ui.dev.no_paper": {"zh": "缺纸", "en": "no paper"},
    "ui.dev.cover_open": {"zh": "盖开", "en": "cover open"},
    "ui.dev.offline": {"zh": "离线", "en": "offline"},
    "ui.dev.absent": {"zh": "未接", "en": "none"},
    "ui.dev.error": {"zh": "故障", "en": "error"},
    "ui.dev.unknown": {"zh": "未知", "en": "unknown"},
    "ui.dur.s": {"zh": "{n}秒", "en": "{n}s"},
    "ui.dur.m": {"zh": "{n}分钟", "en": "{n}m"},
    "ui.dur.h": {"zh": "{n}小时", "en": "{n}h"},
    "ui.dur.d": {"zh": "{n}天", "en": "{n}d"},
    "ui.pickups.search": {"zh": "搜索取货号或顾客名", "en": "Search number or name"},
    "ui.pickups.col.number": {"zh": "取货号", "en": "No."},
    "ui.pickups.col.status": {"zh": "状态", "en": "Status"},
    "ui.pickups.col.window": {"zh": "取货时间", "en": "Window"},
    "ui.pickups.col.customer": {"zh": "顾客", "en": "Customer"},
    "ui.pickups.col.items": {"zh": "商品", "en": "Items"},
    "ui.pickups.status.waiting": {"zh": "待取", "en": "waiting"},
    "ui.pickups.status.collected": {"zh": "已取", "en": "collected"},
    "ui.pickups.status.cancelled": {"zh": "已取消", "en": "cancelled"},
    "ui.pickups.status.late": {"zh": "超时未取", "en": "late"},
    "ui.pickups.hint": {"zh": "回车 = 取货（核销该取货号）  上下键选择  输入文字即搜索",
                        "en": "Enter = collect (redeems the number)  Up/Down select  type to search"},
    "ui.pickups.none": {"zh": "今天没有取货单", "en": "No pickup orders today"},
    "ui.pickups.count": {"zh": "共{total}单  待取{waiting}  已取{collected}  超时{late}  取消{cancelled}",
                         "en": "{total} orders  {waiting} waiting  {collected} collected  {late} late  {cancelled} cancelled"},
    "ui.cards.today": {"zh": "今日已打印 {n} 张包装卡", "en": "Packaging cards printed today: {n}"},
    "ui.cards.hint": {"zh": "回车或 P：打印一张包装卡    R：重印上一张",
                      "en": "Enter or P: print a packaging card    R: reprint the last one"},
    "ui.cards.printed": {"zh": "已送打印：卡号 {serial}（任务 {job}）", "en": "Sent to printer: card {serial} (job {job})"},
    "ui.cards.reprinted": {"zh": "已重印 {n} 张（任务 {jobs}）", "en": "Reprinted {n} (jobs {jobs})"},
    "ui.cards.session": {"zh": "本班打印记录", "en": "Printed this session"},
    "ui.cards.queued": {"zh": "打印机{state}：任务已排队，恢复后自动打印",
                        "en": "Printer {state}: the job is queued and prints when it is back"},
    "ui.void.title": {"zh": "撤销最近的核销：须在规定时间内，须填写原因",
                      "en": "Void a recent redemption: within the window, with a reason"},
    "ui.void.col.id": {"zh": "单号", "en": "No."},
    "ui.void.col.at": {"zh": "时间", "en": "Time"},
    "ui.void.col.what": {"zh": "内容", "en": "What"},
    "ui.void.col.till": {"zh": "收银台", "en": "Till"},
    "ui.void.reason": {"zh": "撤销原因（必填），回车确认", "en": "Reason (required), then Enter"},
    "ui.void.hint": {"zh": "上下键选择，回车填写原因，再回车确认", "en": "Up/Down select, Enter to give a reason, Enter again to confirm"},
    "ui.void.need_reason": {"zh": "请先填写撤销原因", "en": "A reason is required"},
    "ui.void.need_row": {"zh": "请先选择要撤销的记录", "en": "Pick a redemption first"},
    "ui.void.confirm": {"zh": "确认撤销单号 {id}？", "en": "Void decision {id}?"},
    "ui.void.confirm_reason": {"zh": "原因：{reason}", "en": "Reason: {reason}"},
    "ui.void.yes": {"zh": "Y 确认撤销", "en": "Y  void it"},
    "ui.void.no": {"zh": "N 不撤销", "en": "N  keep it"},
    "ui.void.done": {"zh": "已撤销单号 {id}，可重新使用", "en": "Voided decision {id}: the code can be used again"},
    "ui.void.refused": {"zh": "不能撤销：{message}", "en": "Cannot void: {message}"},
    "ui.void.none": {"zh": "没有可撤销的核销", "en": "Nothing to void"},
    "ui.report.title": {"zh": "今日报表 {day}", "en": "Today {day}"},
    "ui.report.cards": {"zh": "包装卡打印", "en": "Cards printed"},
    "ui.report.redemptions": {"zh": "优惠券核销", "en": "Coupons redeemed"},
    "ui.report.rejects_total": {"zh": "拒绝", "en": "Rejected"},
    "ui.report.coupons": {"zh": "优惠券核销（按活动）", "en": "Coupons redeemed, by campaign"},
    "ui.report.pickups": {"zh": "取货完成", "en": "Pickups collected"},
    "ui.report.rejects": {"zh": "拒绝（按原因）", "en": "Rejects, by reason"},
    "ui.report.voids": {"zh": "撤销", "en": "Voids"},
    "ui.report.none": {"zh": "无", "en": "none"},
    "ui.report.hint": {"zh": "P：打印日结单    R：刷新", "en": "P: print end-of-day slip    R: refresh"},
    "ui.report.printed": {"zh": "日结单已送打印（任务 {job}）", "en": "End-of-day slip sent to printer (job {job})"},
    "ui.error": {"zh": "操作失败：{message}", "en": "Failed: {message}"},
    "ui.short.bad_format": {"zh": "无法识别", "en": "unreadable"},
    "ui.short.forged": {"zh": "伪造", "en": "forged"},
    "ui.short.unknown_key": {"zh": "未知密钥", "en": "unknown key"},
    "ui.short.key_expired": {"zh": "密钥过期", "en": "key expired"},
    "ui.short.not_yet_valid": {"zh": "未生效", "en": "not yet valid"},
    "ui.short.expired": {"zh": "已过期", "en": "expired"},
    "ui.short.wrong_store": {"zh": "非本店", "en": "wrong store"},
    "ui.short.campaign_paused": {"zh": "活动暂停", "en": "campaign paused"},
    "ui.short.campaign_revoked": {"zh": "活动撤销", "en": "campaign revoked"},
    "ui.short.coupon_revoked": {"zh": "券已作废", "en": "coupon revoked"},
    "ui.short.already_used_here": {"zh": "本店已用", "en": "used here"},
    "ui.short.used_at_other_store": {"zh": "他店已用", "en": "used elsewhere"},
    "ui.short.order_cancelled": {"zh": "订单取消", "en": "order cancelled"},
    "ui.short.already_collected": {"zh": "已取货", "en": "collected"},
    "ui.short.outside_pickup_window": {"zh": "不在取货时间", "en": "outside window"},
    "ui.short.unknown_pickup_number": {"zh": "无此取货号", "en": "unknown number"},
    "ui.short.too_many_attempts": {"zh": "输错过多", "en": "too many misses"},
    "ui.short.not_redeemable": {"zh": "包装卡码", "en": "card QR"},
    "ui.short.already_checked_in": {"zh": "已签到", "en": "checked in"},
    "ui.short.outside_session_window": {"zh": "不在签到时间", "en": "outside window"},
    "ui.short.ticket_cancelled": {"zh": "票已取消", "en": "ticket cancelled"},
    "ui.short.party_too_large": {"zh": "人数超出", "en": "party too large"},
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
    "reason.already_collected.hq": {"zh": "总部记录此单已在本店取货",
                                    "en": "HQ records this order as collected at this store"},
    "reason.outside_pickup_window": {"zh": "不在取货时间内（{window}）",
                                     "en": "Outside the pickup window ({window})"},
    "reason.unknown_pickup_number": {"zh": "本店没有取货号 {number}",
                                     "en": "No pickup number {number} at this store"},
    "reason.unknown_pickup_number.left": {
        "zh": "本店没有取货号 {number}（再输错 {left} 次将暂停输入）",
        "en": "No pickup number {number} at this store ({left} more misses, then a pause)"},
    "reason.unknown_pickup_number.locked": {
        "zh": "本店没有取货号 {number}；输错过多，手动输入暂停 {retry} 秒",
        "en": "No pickup number {number} at this store; too many misses: typing paused {retry} s"},
    "reason.too_many_attempts": {"zh": "取货号输错过多，请 {retry} 秒后再输入",
                                 "en": "Too many wrong pickup numbers: type again in {retry} s"},
    "reason.not_redeemable": {"zh": "这是包装卡二维码，请顾客用手机扫码入群",
                              "en": "This is a packaging-card QR: the customer scans it with a phone"},
    "reason.already_checked_in": {"zh": "此票已于 {used_at} 签到（{used_till}）",
                                  "en": "Already checked in at {used_at} ({used_till})"},
    "reason.outside_session_window": {"zh": "不在签到时间内（{window}）",
                                      "en": "Outside the check-in window ({window})"},
    "reason.ticket_cancelled": {"zh": "此票已取消（顾客退订或活动取消）",
                                "en": "Ticket cancelled (by the customer, or the session was)"},
    "reason.party_too_large": {"zh": "人数超出：此票限 {ticket_party} 人，本次 {party} 人",
                               "en": "Too many people: the ticket is for {ticket_party}, not {party}"},
    "advice.bad_format": {"zh": "请重扫，或手动输入取货号", "en": "Scan again, or type the pickup number"},
    "advice.call_manager": {"zh": "请勿给予优惠，必要时联系店长",
                            "en": "Do not give the benefit; call the manager if needed"},
    "advice.none": {"zh": "", "en": ""},
    "advice.too_many_attempts": {"zh": "请扫描顾客的取货码（扫码不受限制），或联系店长",
                                 "en": "Scan the customer's pickup code (scans still work), or call the manager"},
    # edge doctor (provisioning/doctor.py): what is wrong, then ".fix": what to do
    "doctor.fix": {"zh": "处理", "en": "Fix"},
    "doctor.summary.ok": {"zh": "全部正常", "en": "All checks passed"},
    "doctor.summary.fail": {"zh": "{n} 项需要处理", "en": "{n} check(s) failed"},
    "doctor.name.config": {"zh": "配置", "en": "Config"},
    "doctor.name.keys": {"zh": "设备密钥", "en": "Device key"},
    "doctor.name.clock": {"zh": "时钟", "en": "Clock"},
    "doctor.name.disk": {"zh": "存储空间", "en": "Disk space"},
    "doctor.name.ledger": {"zh": "账本", "en": "Ledger"},
    "doctor.name.printer": {"zh": "打印机", "en": "Printer"},
    "doctor.name.scanner": {"zh": "扫码枪", "en": "Scanner"},
    "doctor.name.camera": {"zh": "摄像头", "en": "Camera"},
    "doctor.name.broker": {"zh": "总部连接", "en": "HQ link"},
    "doctor.name.enrolment": {"zh": "登记", "en": "Enrolment"},
    "doctor.not_checked": {"zh": "配置有误，未检查", "en": "not checked: the config is wrong"},
    "doctor.daemon_ok": {"zh": "运行正常（{detail}）", "en": "working ({detail})"},
    "doctor.daemon_failed": {"zh": "门店服务报告故障：{detail}", "en": "the box service reports a fault: {detail}"},
    "doctor.daemon_failed.fix": {"zh": "检查设备电源和连线；仍不行请重启本机", "en": "Check the device's power and cable; if it persists, restart the box"},
    "doctor.config.ok": {"zh": "配置正常（门店 {store}，设备 {device}）", "en": "config is fine (store {store}, device {device})"},
    "doctor.config.missing": {"zh": "本机尚未设置：没有配置文件 {path}", "en": "this box is not set up: {path} does not exist"},
    "doctor.config.missing.fix": {"zh": "用总部提供的登记文件运行 edge provision", "en": "Run edge provision with the enrolment bundle from HQ"},
    "doctor.config.bad": {"zh": "配置文件有误：{problem}", "en": "the config file is wrong: {problem}"},
    "doctor.config.bad.fix": {"zh": "按提示修改 {path}，或联系总部技术支持", "en": "Correct {path} as the message says, or call HQ support"},
    "doctor.keys.ok": {"zh": "设备密钥正常（公钥 {public}…）", "en": "device key is fine (public key {public}...)"},
    "doctor.keys.missing": {"zh": "设备密钥不见了（{path}），本机无法为记录签名", "en": "the device key is missing ({path}): the box cannot sign anything"},
    "doctor.keys.missing.fix": {"zh": "从备份恢复（edge restore），或联系总部重新登记本机", "en": "Restore from a backup (edge restore), or ask HQ to enrol the box again"},
    "doctor.keys.unreadable": {"zh": "无法读取设备密钥（{path}）", "en": "the device key cannot be read ({path})"},
    "doctor.keys.unreadable.fix": {"zh": "以门店服务用户运行，或修正文件属主：chown store-edge {path}", "en": "Run as the service user, or fix the owner: chown store-edge {path}"},
    "doctor.keys.bad": {"zh": "设备密钥文件已损坏（{path}）", "en": "the device key file is damaged ({path})"},
    "doctor.keys.bad.fix": {"zh": "从备份恢复（edge restore），或联系总部重新登记本机", "en": "Restore from a backup (edge restore), or ask HQ to enrol the box again"},
    "doctor.keys.open": {"zh": "设备密钥可被其他用户读取（权限 {mode}）", "en": "other users can read the device key (mode {mode})"},
    "doctor.keys.open.fix": {"zh": "执行 chmod 600 {path}", "en": "Run chmod 600 {path}"},
    "doctor.clock.ok": {"zh": "时钟可信（与上次可信时间相差 {skew}，{ntp}）", "en": "clock is trusted ({skew} since the last trusted time, {ntp})"},
    "doctor.clock.never": {"zh": "时钟从未校准：记录的时间会标为不可信", "en": "the clock was never verified: recorded times are marked unsure"},
    "doctor.clock.never.fix": {"zh": "接通网络，等待自动校时（NTP）", "en": "Connect the box to the network so it can set its clock (NTP)"},
    "doctor.clock.behind": {"zh": "系统时间比上次可信时间（{trusted}）慢了 {behind}", "en": "the system clock is {behind} behind the last trusted time ({trusted})"},
    "doctor.clock.behind.fix": {"zh": "接通网络等待自动校时；若一直不准，联系总部下发时间", "en": "Connect to the network and wait for NTP; if it stays wrong, ask HQ to send the time"},
    "doctor.clock.unknown": {"zh": "读不到上次可信时间（账本无法打开）", "en": "the last trusted time cannot be read (ledger unreadable)"},
    "doctor.clock.unknown.fix": {"zh": "先处理账本的问题", "en": "Fix the ledger first"},
    "doctor.disk.ok": {"zh": "存储空间充足（剩余 {free}）", "en": "enough disk space ({free} free)"},
    "doctor.disk.low": {"zh": "存储空间不多了（剩余 {free}）", "en": "disk space is getting low ({free} free)"},
    "doctor.disk.low.fix": {"zh": "删除不需要的文件，或换更大的存储卡", "en": "Delete files you do not need, or use a larger SD card"},
    "doctor.disk.full": {"zh": "存储空间快满了（剩余 {free}），扫码可能无法记录", "en": "the disk is nearly full ({free} free): scans may not be recorded"},
    "doctor.disk.full.fix": {"zh": "立即清理空间（如 journalctl --vacuum-size=50M），或换更大的存储卡", "en": "Free space now (e.g. journalctl --vacuum-size=50M), or use a larger SD card"},
    "doctor.ledger.ok": {"zh": "账本完整（{decisions} 条扫码记录）", "en": "the ledger is intact ({decisions} decisions)"},
    "doctor.ledger.missing": {"zh": "账本文件不存在（{path}）", "en": "the ledger file does not exist ({path})"},
    "doctor.ledger.missing.fix": {"zh": "从备份恢复（edge restore），或联系总部技术支持", "en": "Restore from a backup (edge restore), or call HQ support"},
    "doctor.ledger.corrupt": {"zh": "账本文件已损坏（{path}）", "en": "the ledger file is damaged ({path})"},
    "doctor.ledger.corrupt.fix": {"zh": "停止使用本机，联系总部技术支持；可从备份恢复（edge restore）", "en": "Stop using the box and call HQ support; it can be restored from a backup (edge restore)"},
    "doctor.ledger.newer": {"zh": "账本版本（{version}）比本机软件（{ours}）新", "en": "the ledger (schema {version}) is newer than this software ({ours})"},
    "doctor.ledger.newer.fix": {"zh": "升级门店软件", "en": "Upgrade store-edge"},
    "doctor.printer.none": {"zh": "未配置打印机（[printer] url）", "en": "no printer configured ([printer] url)"},
    "doctor.printer.ready": {"zh": "打印机就绪（{url}）", "en": "printer ready ({url})"},
    "doctor.printer.unknown": {"zh": "打印机已连接，但不回报状态（{url}）", "en": "printer connected but reports no status ({url})"},
    "doctor.printer.unknown.fix": {"zh": "打印一张测试页确认", "en": "Print a test page to be sure"},
    "doctor.printer.no_paper": {"zh": "打印机缺纸", "en": "the printer is out of paper"},
    "doctor.printer.no_paper.fix": {"zh": "装入打印纸", "en": "Load paper"},
    "doctor.printer.cover_open": {"zh": "打印机盖未关", "en": "the printer cover is open"},
    "doctor.printer.cover_open.fix": {"zh": "合上打印机盖", "en": "Close the cover"},
    "doctor.printer.offline": {"zh": "打印机连不上（{url}：{detail}）", "en": "the printer does not answer ({url}: {detail})"},
    "doctor.printer.offline.fix": {"zh": "检查打印机电源和数据线/网线，确认 [printer] url 正确", "en": "Check the printer's power and cable, and that [printer] url is right"},
    "doctor.printer.error": {"zh": "打印机故障（{detail}）", "en": "printer fault ({detail})"},
    "doctor.printer.error.fix": {"zh": "关掉打印机再打开；仍不行请联系维修", "en": "Switch the printer off and on; if it persists, call for repair"},
    "doctor.scanner.none": {"zh": "未配置扫码枪（[scanner] port）；键盘式扫码枪直接接收银界面即可", "en": "no serial scanner configured ([scanner] port); a keyboard-mode scanner works in the cashier screen"},
    "doctor.scanner.ok": {"zh": "扫码枪已连接（{port}）", "en": "scanner present ({port})"},
    "doctor.scanner.missing": {"zh": "找不到扫码枪（{port}）", "en": "the scanner is not found ({port})"},
    "doctor.scanner.missing.fix": {"zh": "插好扫码枪的 USB 线；确认 [scanner] port（通常是 /dev/ttyACM0）", "en": "Plug the scanner's USB cable in; check [scanner] port (usually /dev/ttyACM0)"},
    "doctor.scanner.denied": {"zh": "没有权限使用扫码枪（{port}）", "en": "no permission to use the scanner ({port})"},
    "doctor.scanner.denied.fix": {"zh": "把门店服务用户加入 dialout 组（重新运行安装脚本即可）", "en": "Add the service user to the dialout group (re-running the install script does it)"},
    "doctor.camera.none": {"zh": "未配置摄像头", "en": "no camera configured"},
    "doctor.camera.ok": {"zh": "摄像头已连接（{source}）", "en": "camera present ({source})"},
    "doctor.camera.missing": {"zh": "找不到摄像头（{source}）", "en": "the camera is not found ({source})"},
    "doctor.camera.missing.fix": {"zh": "插好摄像头；确认 [camera] source", "en": "Plug the camera in; check [camera] source"},
    "doctor.camera.denied": {"zh": "没有权限使用摄像头（{source}）", "en": "no permission to use the camera ({source})"},
    "doctor.camera.denied.fix": {"zh": "把门店服务用户加入 video 组（重新运行安装脚本即可）", "en": "Add the service user to the video group (re-running the install script does it)"},
    "doctor.broker.ok": {"zh": "总部服务器可达（{host}:{port}，{tls}）", "en": "HQ's broker answers ({host}:{port}, {tls})"},
    "doctor.broker.none": {"zh": "未配置总部连接（[mqtt]）：记录不会同步到总部", "en": "no HQ link configured ([mqtt]): nothing reaches HQ"},
    "doctor.broker.none.fix": {"zh": "用总部提供的登记文件运行 edge provision", "en": "Run edge provision with the enrolment bundle from HQ"},
    "doctor.broker.unreachable": {"zh": "连不上总部服务器 {host}:{port}", "en": "cannot reach HQ's broker {host}:{port}"},
    "doctor.broker.unreachable.fix": {"zh": "检查网络（网线/Wi-Fi/路由器）；离线期间照常扫码，联网后自动补传", "en": "Check the network (cable, Wi-Fi, router); scanning works offline and syncs when back"},
    "doctor.broker.tls": {"zh": "与总部的加密连接验证失败（{host}:{port}）", "en": "the secure connection to HQ failed verification ({host}:{port})"},
    "doctor.broker.tls.fix": {"zh": "先确认本机时间正确；再确认证书文件是总部提供的，必要时重新登记", "en": "Check the box's clock first; then that the certificate files are HQ's; enrol again if needed"},
    "doctor.broker.refused_auth": {"zh": "总部服务器拒绝本机登录：凭据无效或未获授权", "en": "HQ's broker refused this box: bad credentials or not authorised"},
    "doctor.broker.refused_auth.fix": {"zh": "本机凭据可能已失效：联系总部重新登记", "en": "The box's credentials may be revoked: ask HQ to enrol it again"},
    "doctor.broker.refused": {"zh": "总部服务器拒绝连接（代码 {code}）", "en": "HQ's broker refused the connection (code {code})"},
    "doctor.broker.refused.fix": {"zh": "稍后再试；仍不行请联系总部", "en": "Try again later; if it persists, call HQ"},
    "doctor.enrolment.ok": {"zh": "已登记：门店 {store} 设备 {device}，总部配置 v{version}", "en": "enrolled: store {store}, device {device}, HQ config v{version}"},
    "doctor.enrolment.no_key": {"zh": "未登记：没有可用的设备密钥", "en": "not enrolled: no usable device key"},
    "doctor.enrolment.no_key.fix": {"zh": "用总部提供的登记文件运行 edge provision", "en": "Run edge provision with the enrolment bundle from HQ"},
    "doctor.enrolment.no_ledger": {"zh": "读不到登记信息（账本无法打开）", "en": "enrolment cannot be read (ledger unreadable)"},
    "doctor.enrolment.no_ledger.fix": {"zh": "先处理账本的问题", "en": "Fix the ledger first"},
    "doctor.enrolment.no_trust": {"zh": "本机不信任任何总部密钥：所有券码都会被拒绝", "en": "the box trusts no HQ key: every code will be rejected"},
    "doctor.enrolment.no_trust.fix": {"zh": "用总部提供的登记文件运行 edge provision", "en": "Run edge provision with the enrolment bundle from HQ"},
    "doctor.enrolment.no_config": {"zh": "已登记（门店 {store}），但还没收到总部配置", "en": "enrolled (store {store}) but HQ's config has not arrived yet"},
    "doctor.enrolment.no_config.fix": {"zh": "保持联网，总部会自动下发；长时间未到请联系总部", "en": "Keep the box online: HQ sends it; call HQ if it does not come"},
    # edge provision (provisioning/enrol.py): the outcome, or why HQ refused
    "provision.ok": {"zh": "本机已登记：门店 {store}，设备 {device}", "en": "This box is enrolled: store {store}, device {device}"},
    "provision.already": {"zh": "本机早已登记（门店 {store}，设备 {device}），未做改动", "en": "This box was already enrolled (store {store}, device {device}): nothing changed"},
    "provision.token_used": {"zh": "此登记文件已用过：请向总部申请新的登记文件", "en": "This bundle was used already: ask HQ for a new one"},
    "provision.token_expired": {"zh": "此登记文件已过期：请向总部申请新的登记文件", "en": "This bundle has expired: ask HQ for a new one"},
    "provision.token_unknown": {"zh": "总部不认识此登记文件：请确认是总部发的最新文件", "en": "HQ does not know this bundle: check it is HQ's latest"},
    "provision.wrong_store": {"zh": "此登记文件属于另一家门店", "en": "This bundle is for another store"},
    "provision.bad_signature": {"zh": "登记请求签名无效：请重新运行", "en": "The enrolment request's signature is invalid: run it again"},
    "provision.device_exists": {"zh": "总部已有同名设备：请换一个设备名（--device）", "en": "HQ has a device of that name: choose another (--device)"},
    "provision.bad_request": {"zh": "登记请求有误：{detail}", "en": "The enrolment request is wrong: {detail}"},
    "provision.unreachable": {"zh": "连不上总部：请检查网络后重新运行（已生成的密钥会保留）", "en": "Cannot reach HQ: check the network and run it again (the key made is kept)"},
    "provision.claim_refused": {"zh": "总部的消息服务器拒绝了此登记文件（可能已过期或被撤销）：请向总部申请新的登记文件", "en": "HQ's broker refused this bundle (expired or revoked?): ask HQ for a new one"},
    "provision.hq_error": {"zh": "总部暂时无法发放连接凭据：请稍后重新运行（已生成的密钥会保留）", "en": "HQ could not issue the box's broker credentials: run it again later (the key made is kept)"},
    "provision.bad_reply": {"zh": "总部发来的凭据无法解开：请重新运行", "en": "HQ's credentials do not open: run it again"},
    "provision.card_printed": {"zh": "已打印测试卡：请确认中文、二维码都清晰", "en": "Test card printed: check the Chinese text and the QR are clear"},
    "provision.card_failed": {"zh": "测试卡没有打印出来（{detail}）", "en": "The test card did not print ({detail})"},
    "provision.scan_timeout": {"zh": "没有扫到登记二维码：请把总部发的二维码对准扫码枪或摄像头后重新运行", "en": "No enrolment QR was read: hold HQ's QR code to the scanner or camera and run it again"},
    "provision.bad_scanner": {"zh": "无法使用这个扫码设备：{detail}", "en": "This scanning device cannot be used: {detail}"},
    "reset.confirm": {"zh": "输入的门店编号不对，未做任何清除", "en": "The store id typed does not match: nothing was wiped"},
    "reset.unsent": {"zh": "还有 {n} 条记录没有送到总部：请先联网同步；确实要丢弃请加 --discard-unsent", "en": "{n} event(s) have not reached HQ: sync first, or add --discard-unsent to lose them"},
    "reset.in_use": {"zh": "门店服务正在运行：请先停止（systemctl stop store-edge）", "en": "The store service is running: stop it first (systemctl stop store-edge)"},
    "reset.not_a_box": {"zh": "这里没有门店盒子的数据", "en": "There is no box here"},
    "reset.warn_discard": {"zh": "注意：{n} 条记录尚未送到总部，清除后将永久丢失", "en": "Warning: {n} event(s) have not reached HQ and will be lost for good"},
    "reset.prompt": {"zh": "将清除门店 {store}（设备 {device}）的密钥和账本。确认请输入门店编号：", "en": "This wipes the keys and ledger of store {store} (device {device}). Type the store id to confirm: "},
    "reset.done": {"zh": "已恢复出厂状态：门店 {store} 的密钥和账本已清除", "en": "Factory reset done: store {store}'s keys and ledger are wiped"},
    "provision.scan_now": {"zh": "请把登记二维码对准 {source}（{s} 秒内）", "en": "Show the enrolment QR to {source} (within {s} s)"},
    "provision.bad_bundle": {"zh": "这不是有效的登记文件", "en": "This is not an enrolment bundle"},
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
    "slip.enrolled.title": {"zh": "本机已登记", "en": "BOX ENROLLED"},
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
           "advice.bad_format", Reason.NOT_REDEEMABLE: "advice.none",
           Reason.TOO_MANY_ATTEMPTS: "advice.too_many_attempts"}


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


def hhmm(ts: float | int | None) -> str:
    """A local ``HH:MM`` for a timestamp."""
    if not ts:
        return "?"
    return time.strftime("%H:%M", time.localtime(float(ts)))


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
        if v.kind == "ticket":
            what = t("ticket.ok", lang, title=f.get("title") or f.get("session_id", ""),
                     start=hhmm(f.get("starts")), end=hhmm(f.get("ends")),
                     holder=f.get("holder", ""), party=f.get("party", ""))
            if f.get("party") != f.get("ticket_party"):
                what += " · " + t("ticket.partial", lang, ticket_party=f.get("ticket_party"))
        elif v.kind == "pickup":
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
        "retry": f.get("retry_after_s") or f.get("locked_for_s") or "",
        "left": f.get("misses_left", ""),
        "window": f"{when(f.get('window_start'))} - {when(f.get('window_end'))}",
        "party": f.get("party", ""), "ticket_party": f.get("ticket_party", ""),
    }
    if v.kind == "ticket":  # a session's check-in window, margins included
        values["window"] = f"{when(f.get('opens'))} - {when(f.get('closes'))}"
    key = "reason." + v.reason.value
    if v.reason is Reason.ALREADY_COLLECTED and f.get("collected_per_hq"):
        key += ".hq"  # collected before this box knew the order: no time or till here
    elif v.reason is Reason.UNKNOWN_PICKUP_NUMBER and f.get("locked_for_s"):
        key += ".locked"  # this miss started the cool-down: say so at once
    elif v.reason is Reason.UNKNOWN_PICKUP_NUMBER and f.get("misses_left") in (1, 2):
        key += ".left"  # warn before the pause, not on every miss
    what = t(key, lang, **values)
    advice = t(_ADVICE.get(v.reason, "advice.call_manager"), lang)
    return t("rejected", lang), what, advice
