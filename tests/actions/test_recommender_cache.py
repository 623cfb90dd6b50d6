"""The recommender is fitted once per process and refitted in the background, never per call."""
from __future__ import annotations

import asyncio
from datetime import datetime, timezone
from typing import Any

import pytest

from actions import account
from actions.shop.base import Basket, ProductView, ShopUnavailable
from actions.shop.recommend import Recommender


def product(sku: str, category: str, stock: int = 10) -> ProductView:
    return ProductView(sku, category, sku, sku, "b", 100, stock)


PRODUCTS = [product("SHOE", "running_shoes"), product("SOCK", "socks"), product("BOTTLE", "bottles"),
            product("MAT", "yoga")]
T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


class CountingShop:
    """Just what fitting reads; counts the whole-history reads."""

    def __init__(self) -> None:
        self.fits = 0
        self.fail = False
        self.baskets_now = [Basket(1, "E1", T0, ("SHOE", "SOCK")), Basket(2, "E2", T0, ("SHOE", "SOCK"))]

    async def products(self, skus: Any = None) -> list[ProductView]:
        return PRODUCTS

    async def baskets(self, customer_id: Any = None) -> list[Basket]:
        if self.fail:
            raise ShopUnavailable("down")
        self.fits += 1
        return list(self.baskets_now)


@pytest.fixture(autouse=True)
def fresh_model():
    account.invalidate_recommender()
    yield
    account.invalidate_recommender()


def test_recommender_is_fitted_once_and_reused() -> None:
    shop = CountingShop()

    async def scenario() -> tuple[Recommender, Recommender]:
        return await account.recommender(shop), await account.recommender(shop)

    first, second = asyncio.run(scenario())
    assert first is second and shop.fits == 1


def test_recommender_refits_in_the_background_while_the_old_model_answers(monkeypatch) -> None:
    shop = CountingShop()
    clock = [1000.0]
    monkeypatch.setattr(account.time, "monotonic", lambda: clock[0])

    async def scenario() -> tuple[Recommender, Recommender, Recommender]:
        old = await account.recommender(shop)
        shop.baskets_now.append(Basket(3, "E3", T0, ("SHOE", "BOTTLE")))
        clock[0] += account.REFIT_SECONDS + 1
        stale = await account.recommender(shop)  # answers at once with the current model
        await account._refit  # the background refit
        return old, stale, await account.recommender(shop)

    old, stale, new = asyncio.run(scenario())
    assert stale is old and new is not old and shop.fits == 2
    assert new.co["SHOE"]["BOTTLE"] > 0 and "BOTTLE" not in old.co["SHOE"]


def test_recommender_keeps_the_old_model_when_a_refit_fails(monkeypatch, caplog) -> None:
    shop = CountingShop()
    clock = [1000.0]
    monkeypatch.setattr(account.time, "monotonic", lambda: clock[0])

    async def scenario() -> tuple[Recommender, Recommender, bool]:
        old = await account.recommender(shop)
        shop.fail = True
        clock[0] += account.REFIT_SECONDS + 1
        await account.recommender(shop)
        await account._refit
        first_refit = account._refit
        await account.recommender(shop)  # right after the failure: no new refit yet
        return old, await account.recommender(shop), first_refit is account._refit

    old, after, no_retry_storm = asyncio.run(scenario())
    assert after is old and no_retry_storm
    assert "Recommender refit failed" in caplog.text


def test_recommend_precomputed_top_lists_match_the_counts() -> None:
    """Fitting sorts the co-purchase lists once; a call only sums them (same scores as from the counts)."""
    baskets = [Basket(1, "E1", T0, ("SHOE", "SOCK")), Basket(2, "E2", T0, ("SHOE", "SOCK", "BOTTLE")),
               Basket(3, "E3", T0, ("MAT",))]
    model = Recommender(PRODUCTS).fit(baskets)
    recs = model.recommend(["SHOE"], k=3)
    assert [r.sku for r in recs[:2]] == ["SOCK", "BOTTLE"]
    assert recs[0].reason == "co_purchase" and recs[0].because_sku == "SHOE"
    # SOCK: 2 co-purchases with SHOE; popularity 2 each → 2 / sqrt(2) / sqrt(2) = 1.0 from co-purchase alone
    assert dict(model._co_top["SHOE"])["SOCK"] == pytest.approx(1.0)
    assert all(r.sku != "SHOE" for r in recs)  # owned durable item excluded
