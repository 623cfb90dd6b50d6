"""Every figure of the dashboard: its one-line definition (zh/en) and how it is computed from rollup sums.

The same table prints the definitions on the page and in docs/dashboard.md
(``tests/analytics/test_metrics_doc.py`` checks the doc lists each one).
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Iterable

# (key, English name, Chinese name, English definition, Chinese definition, unit)
DEFINITIONS: tuple[tuple[str, str, str, str, str, str], ...] = (
    ("conversations", "Conversations", "会话数",
     "Conversations (tracker sessions) started in the range.", "所选时间内开始的会话（对话会话）数量。", "count"),
    ("bot_resolution_rate", "Bot resolution rate", "机器人解决率",
     "Ended conversations with a shopper message, no handoff and never two fallbacks in a row, over ended conversations.",
     "已结束且无转人工、无连续两次兜底回复的会话占已结束会话的比例。", "ratio"),
    ("escalation_rate", "Escalation rate", "转人工率",
     "Conversations handed to a human, over conversations; reasons from the escalation rule.",
     "转接人工的会话占全部会话的比例；原因取自转人工规则。", "ratio"),
    ("fallback_rate", "Fallback rate", "兜底率",
     "Shopper turns answered by a fallback (NLU fallback, fallback action or a knowledge-base miss), over shopper turns.",
     "由兜底回复（NLU 兜底、兜底动作或知识库未命中）应答的用户轮次占全部用户轮次的比例。", "ratio"),
    ("frt_bot", "First response time (bot)", "首次响应时间（机器人）",
     "Mean seconds from a conversation's first shopper message to the bot's first reply.",
     "会话中用户第一条消息到机器人第一条回复的平均秒数。", "seconds"),
    ("frt_human", "First response time (human)", "首次响应时间（人工）",
     "Mean seconds from a handoff request to the agent's first reply.", "从转人工请求到客服第一条回复的平均秒数。", "seconds"),
    ("queue_wait", "Queue wait", "排队等待时间",
     "Mean seconds from a handoff request to its assignment to an agent.", "从转人工请求到分配给客服的平均秒数。", "seconds"),
    ("handling", "Handling time", "处理时长",
     "Mean seconds from a handoff's assignment to its resolution.", "从分配给客服到人工会话结束的平均秒数。", "seconds"),
    ("resolution_time", "Resolution time", "解决时长",
     "Mean seconds from a conversation's start to its resolution (bot: its last event; human: the handoff's resolve).",
     "从会话开始到解决的平均秒数（机器人：最后一个事件；人工：客服结束会话）。", "seconds"),
    ("fcr", "First-contact resolution", "首次接触解决率",
     "Ended conversations resolved (by the bot or an agent) and not followed by a repeat inquiry, over ended conversations.",
     "已解决（机器人或人工）且之后没有重复咨询的会话占已结束会话的比例。", "ratio"),
    ("repeat_rate", "Repeat-inquiry rate", "重复咨询率",
     "Conversations followed by another from the same customer with the same first intent within 7 days, over conversations.",
     "同一顾客在 7 天内以相同首个意图再次发起会话的会话占全部会话的比例。", "ratio"),
    ("csat", "CSAT", "满意度 (CSAT)",
     "Mean star rating (1-5) from the conversation-end survey and the handoff rating.",
     "会话结束调查与人工服务评价的平均星级（1-5）。", "score"),
    ("csat_share", "CSAT (4-5 stars)", "满意率（4-5 星）",
     "Ratings of 4 or 5 stars over all ratings.", "4 星或 5 星评价占全部评价的比例。", "ratio"),
    ("nps", "NPS", "净推荐值 (NPS)",
     "Promoters (9-10) minus detractors (0-6), in percent of NPS answers.", "推荐者（9-10 分）减去贬损者（0-6 分）占全部回答的百分比。", "score"),
    ("ces", "CES", "客户费力度 (CES)",
     "Mean customer-effort answer (1 = very easy ... 7 = very hard).", "客户费力度平均分（1 = 非常容易 … 7 = 非常困难）。", "score"),
    ("surveys", "Ratings", "评价数", "CSAT answers in the range.", "所选时间内的满意度评价数量。", "count"),
    ("orders", "Orders", "订单数", "Paid orders in the range.", "所选时间内已支付的订单数。", "count"),
    ("aov", "Average order value", "客单价", "Paid order amount over paid orders.", "已支付订单金额除以已支付订单数。", "money"),
    ("chat_to_order", "Chat-to-order conversion", "咨询转化率",
     "Conversations followed by a paid order of the same customer within 7 days, over conversations.",
     "7 天内同一顾客产生已支付订单的会话占全部会话的比例。", "ratio"),
    ("repurchase_rate", "Repurchase rate", "复购率",
     "Paid orders from customers who had paid an order before, over paid orders.", "已有过付款订单的顾客所下订单占全部已付款订单的比例。", "ratio"),
    ("repurchase_cycle_days", "Repurchase cycle", "复购周期",
     "Mean days between a repurchase and the same customer's previous paid order.", "复购订单与该顾客上一笔付款订单之间的平均天数。", "days"),
    ("buyers", "Buyers", "购买顾客数", "Customers with a paid order in the range.", "所选时间内有已付款订单的顾客数。", "count"),
    ("ltv", "Customer lifetime value", "顾客终身价值",
     "Mean amount paid up to the range's end by the customers who paid in the range.",
     "所选时间内有付款的顾客截至结束日累计付款金额的平均值。", "money"),
    ("retention", "Customer retention", "顾客留存率",
     "Of the customers who paid in the equally long period before the range, the share who paid again in it.",
     "在所选时间之前等长时段内付过款的顾客中，在所选时间内再次付款的比例。", "ratio"),
    ("rec_shown", "Recommendations shown", "推荐展示数", "Product recommendations shown in chat.", "对话中展示的商品推荐次数。", "count"),
    ("rec_clicked", "Recommendations clicked", "推荐点击数", "Product recommendations clicked.", "被点击的商品推荐次数。", "count"),
    ("rec_ctr", "Recommendation click rate", "推荐点击率", "Clicks over recommendations shown.", "推荐点击数除以推荐展示数。", "ratio"),
    ("rec_ordered", "Recommendations ordered", "推荐成交数",
     "Conversations with a recommendation click followed by a paid order of the same customer within 7 days.",
     "有推荐点击、且同一顾客 7 天内产生已支付订单的会话数。", "count"),
    ("rec_order_rate", "Recommendation order rate", "推荐成交率",
     "Recommendations ordered over conversations with a recommendation click.",
     "推荐成交数除以有推荐点击的会话数。", "ratio"),
    ("rec_order_value", "Recommendation order value", "推荐成交金额",
     "Amount of the paid orders counted in Recommendations ordered.", "计入推荐成交数的已支付订单金额。", "money"),
)
TABLE_DEFINITIONS: tuple[tuple[str, str, str, str, str], ...] = (
    ("figures", "All figures", "全部指标", "Every figure above in one table.", "上方全部指标汇总为一张表。"),
    ("escalation_reasons", "Escalation reasons", "转人工原因", "Handoffs per escalation rule.", "按转人工规则统计的次数。"),
    ("top_intents", "Top intents", "热门意图", "Shopper messages per recognised intent.", "按识别出的意图统计的用户消息数。"),
    ("top_unanswered", "Top unanswered questions", "未解答问题",
     "Questions the knowledge base had no answer for, by normalised text.", "知识库无法回答的问题（按规范化文本统计）。"),
    ("csat_by_channel", "Satisfaction by channel", "各渠道满意度", "CSAT, NPS and CES per channel.", "各渠道的 CSAT、NPS 与 CES。"),
    ("csat_by_agent", "Satisfaction by agent", "各客服满意度",
     "CSAT ratings and mean, NPS and mean CES per agent ('bot': no agent involved).",
     "各客服的满意度评价数与均值、NPS 及 CES 均值（bot：无人工参与）。"),
    ("csat_by_intent", "Satisfaction by intent", "各意图满意度",
     "CSAT ratings and mean, NPS and mean CES per conversation's first intent.",
     "按会话首个意图统计的满意度评价数与均值、NPS 及 CES 均值。"),
    ("distribution", "Rating distribution", "评分分布", "Answers per score of CSAT, NPS and CES.", "CSAT、NPS、CES 各分值的回答数量。"),
    ("conversations_by_day", "Conversations per day", "每日会话数", "Conversations started per UTC day.", "每天（UTC）开始的会话数。"),
    # from Customer 360 (bot/customers), when that feature runs
    ("health_distribution", "Health-score distribution", "健康度分布",
     "Customers (not merged away) per health band and per 10-point score bin, now; with a segment: that segment's customers.",
     "当前各健康度区间与每 10 分段的客户数（不含已合并客户）；选择分群时仅统计该分群客户。"),
    ("health_trend", "Health-score trend", "健康度趋势",
     "At the end of each day (weekly past 92 days), customers per band and the mean score, from each customer's latest recorded score.",
     "每天结束时（超过 92 天按周）各健康度区间的客户数与平均分，取每位客户当时最新一次记录的分数。"),
    # from the trigger engine's report (GET /triggers/report), built on the page
    ("journeys", "Journeys", "旅程", "Sends, conversions (the journey's goal event after a send) and skips per journey.",
     "各旅程的发送数、转化数（发送后达成旅程目标事件）与跳过数。"),
    ("journey_skips", "Skips by reason", "跳过原因", "Sends a guard skipped (consent, quiet hours, caps, channel ...), per reason.",
     "被守卫条件跳过的发送（同意、免打扰、频次上限、渠道……），按原因统计。"),
    ("journey_funnel", "Funnel per step and A/B variant", "各步骤与 A/B 变体漏斗",
     "Sends and conversions per step and variant; p-value of a two-proportion z-test against the step's control.",
     "各步骤、各变体的发送与转化；与该步骤对照组的双比例 z 检验 p 值。"),
)

_SECONDS = ("frt_bot", "frt_human", "queue_wait", "handling", "resolution_time")


@dataclass
class _Sum:
    n: int = 0
    total: float = 0.0


def _ratio(a: float, b: float) -> float | None:
    return round(a / b, 4) if b else None


def _mean(s: _Sum) -> float | None:
    return round(s.total / s.n, 2) if s.n else None


def _nps(dist: dict[str, int]) -> float | None:
    answers = sum(dist.values())
    if not answers:
        return None
    promoters = sum(n for score, n in dist.items() if int(score) >= 9)
    detractors = sum(n for score, n in dist.items() if int(score) <= 6)
    return round(100.0 * (promoters - detractors) / answers, 1)


def compute(rows: Iterable[tuple[str, str, int, float]],
            channel_rows: Iterable[tuple[str, str, int, float]] = (), top: int = 20) -> dict[str, Any]:
    """Figures and tables from ``(metric, dim, n, total)`` and ``(channel, metric, n, total)`` rollup sums."""
    overall: dict[str, _Sum] = defaultdict(_Sum)
    by_dim: dict[str, dict[str, _Sum]] = defaultdict(lambda: defaultdict(_Sum))
    by_channel: dict[str, dict[str, _Sum]] = defaultdict(lambda: defaultdict(_Sum))
    for metric, dim, n, total in rows:
        overall[metric].n += n
        overall[metric].total += total
        if dim:
            by_dim[metric][dim].n += n
            by_dim[metric][dim].total += total
    for channel, metric, n, total in channel_rows:
        by_channel[channel or "unknown"][metric].n += n
        by_channel[channel or "unknown"][metric].total += total
    conversations = overall["conversations"].n
    ended = overall["ended"].n
    dist = {kind: {dim: s.n for dim, s in by_dim[kind].items()} for kind in ("csat", "nps", "ces")}
    csat_n = overall["csat"].n
    figures: dict[str, Any] = {
        "conversations": conversations,
        "bot_resolution_rate": _ratio(overall["bot_resolved"].n, ended),
        "escalation_rate": _ratio(overall["escalated"].n, conversations),
        "fallback_rate": _ratio(overall["fallback"].n, overall["user_turns"].n),
        "fcr": _ratio(overall["fcr"].n, ended),
        "repeat_rate": _ratio(overall["repeated"].n, conversations),
        "csat": _mean(overall["csat"]),
        "csat_share": _ratio(sum(n for d, n in dist["csat"].items() if int(d) >= 4), csat_n),
        "nps": _nps(dist["nps"]),
        "ces": _mean(overall["ces"]),
        "surveys": csat_n,
        "orders": overall["orders"].n,
        "aov": _mean(overall["orders"]),
        "chat_to_order": _ratio(overall["converted"].n, conversations),
        "repurchase_rate": _ratio(overall["repurchase"].n, overall["orders"].n),
        "repurchase_cycle_days": _mean(overall["repurchase"]),
        "rec_shown": overall["rec_shown"].n,
        "rec_clicked": overall["rec_clicked"].n,
        "rec_ctr": _ratio(overall["rec_clicked"].n, overall["rec_shown"].n),
        "rec_ordered": overall["rec_ordered"].n,
        "rec_order_rate": _ratio(overall["rec_ordered"].n, overall["rec_click_conversations"].n),
        "rec_order_value": round(overall["rec_ordered"].total, 2),
    }
    for key in _SECONDS:
        figures[key] = _mean(overall[key])

    def ranked(metric: str) -> list[dict[str, Any]]:
        items = sorted(by_dim[metric].items(), key=lambda kv: (-kv[1].n, kv[0]))[:top]
        return [{"name": name, "count": s.n} for name, s in items]

    def by_pair(suffix: str, label: str) -> list[dict[str, Any]]:
        """CSAT, NPS and CES per agent (``suffix`` agent) or per first intent (``intent``)."""
        groups: dict[str, dict[str, Any]] = defaultdict(lambda: {"csat": _Sum(), "ces": _Sum(), "nps": {}})
        for kind in ("csat", "nps", "ces"):
            for dim, s in by_dim[f"{kind}_{suffix}"].items():
                name, score = dim.rsplit("|", 1)
                group = groups[name]
                if kind == "nps":
                    group["nps"][score] = group["nps"].get(score, 0) + s.n
                else:
                    group[kind].n += s.n
                    group[kind].total += s.total
        return [{label: name, "ratings": g["csat"].n, "csat": _mean(g["csat"]), "nps": _nps(g["nps"]),
                 "ces": _mean(g["ces"])}
                for name, g in sorted(groups.items(), key=lambda kv: (-kv[1]["csat"].n, kv[0]))]

    tables = {
        "escalation_reasons": ranked("escalated"),
        "top_intents": ranked("intent"),
        "top_unanswered": ranked("kb_miss"),
        "csat_by_channel": [{"channel": ch, "conversations": m["conversations"].n, "ratings": m["csat"].n,
                             "csat": _mean(m["csat"]), "nps_answers": m["nps"].n, "ces": _mean(m["ces"])}
                            for ch, m in sorted(by_channel.items())],
        "csat_by_agent": by_pair("agent", "agent"),
        "csat_by_intent": by_pair("intent", "intent"),
        "distribution": [{"kind": kind, "score": int(score), "count": n}
                         for kind in ("csat", "nps", "ces") for score, n in sorted(dist[kind].items(), key=lambda kv: int(kv[0]))],
    }
    return {"figures": figures, "tables": tables}


def definitions(language: str = "en") -> dict[str, dict[str, str]]:
    zh = str(language).startswith("zh")
    out = {key: {"name": zh_name if zh else en_name, "definition": zh_def if zh else en_def, "unit": unit}
           for key, en_name, zh_name, en_def, zh_def, unit in DEFINITIONS}
    out.update({key: {"name": zh_name if zh else en_name, "definition": zh_def if zh else en_def, "unit": "table"}
                for key, en_name, zh_name, en_def, zh_def in TABLE_DEFINITIONS})
    return out
