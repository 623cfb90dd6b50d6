"""Points earned by shop.yml's rules, membership tiers, and compensation coupons within role limits.

The store keeps the ledger and enforces idempotency and balances in its transactions;
this module turns the shop's configuration into the numbers it is given.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Optional, Sequence

from actions.shop.base import ChangeResult, IssueResult, PointsEntryView, ShopDataError, ShopStore
from actions.shop.config import ShopConfig, Tier


def points_for(config: ShopConfig, kind: str, amount_cents: int = 0) -> int:
    """Points one occurrence of `kind` earns (a purchase by the amount paid)."""
    rule = config.points_rules.get(kind)
    if rule is None:
        raise ShopDataError(f"no points rule for {kind!r} in {config.path or 'shop.yml'}; "
                            f"known: {sorted(config.points_rules)}. Fix: add `points: rules: {kind}: ...`.")
    return int(rule.points + rule.per_currency_unit * (amount_cents // 100))


async def award(store: ShopStore, config: ShopConfig, customer_id: int, kind: str, *, ref: str, now: datetime,
                amount_cents: int = 0) -> int:
    """Earn points for a purchase/review/share once per reference (order id, review id, share id)."""
    rule = config.points_rules.get(kind)
    points = points_for(config, kind, amount_cents)
    return await store.earn_points(customer_id, kind, ref=ref, points=points, now=now,
                                   expires_at=now + timedelta(days=config.points_expire_days),
                                   daily_max=rule.daily_max if rule else None)


async def order_status_reported(store: ShopStore, config: ShopConfig, order_id: str, status: str, *,
                                now: datetime) -> tuple[ChangeResult, int]:
    """The shop reports an order paid/shipped/delivered: record it, and earn its purchase points.

    Points follow `points: rules: purchase` (per currency unit of the amount paid, on the rule's
    `on:` status, default delivered, which the shop's rules use: a cancelled order never earned),
    once per order (ledger reason `purchase:<order id>`). A repeated report records nothing new
    and earns nothing; a report that crashed between the two steps earns when repeated.
    Returns (the change, points added).
    """
    change = await store.set_order_status(order_id, status, now=now)
    rule = config.points_rules.get("purchase")
    if not change.ok or change.order is None or rule is None or status != rule.on:
        return change, 0
    order = change.order
    added = await award(store, config, order.customer_id, "purchase", ref=order.id, now=now,
                        amount_cents=order.total_cents - order.discount_cents)
    return change, added


@dataclass(frozen=True)
class Membership:
    tier: Tier
    lifetime_points: int
    next_tier: Optional[Tier]

    @property
    def points_to_next(self) -> Optional[int]:
        return self.next_tier.min_points - self.lifetime_points if self.next_tier else None


def membership(config: ShopConfig, entries: Sequence[PointsEntryView]) -> Membership:
    """The tier from lifetime earned points (spending does not demote)."""
    lifetime = sum(e.delta for e in entries if e.delta > 0)
    return Membership(config.tier_for(lifetime), lifetime, config.next_tier(lifetime))


async def compensate(store: ShopStore, config: ShopConfig, customer_id: int, *, amount_cents: int, role: str,
                     agent: str, case_id: str, now: datetime, template: str = "COMP") -> IssueResult:
    """A compensation coupon an agent issues for a resolved complaint, within the role's limit.

    One per case (`case_id`, e.g. the handoff id): a repeated click returns the same coupon.
    """
    limit = config.compensation_limits_cents.get(role)
    if limit is None:
        return IssueResult(False, "role_not_allowed")
    if amount_cents <= 0 or amount_cents > limit:
        return IssueResult(False, "over_limit")
    return await store.issue_coupon(customer_id, template, issue_key=f"compensation:{case_id}",
                                    issued_by=f"agent:{agent}", now=now, amount_cents=amount_cents)
