"""The demo sports shop's catalogue structure: categories, size charts, what goes with what.

Shared by the seeder (which generates orders with this structure) and the size
advisor; the recommender learns co-purchase from orders, never from this table.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CategorySpec:
    code: str
    zh: str
    en: str
    size_chart: str  # shoes | apparel | none
    price_yuan: tuple[int, int]
    peak_month: int  # seasonal peak (1-12)
    seasonality: float  # 0 = flat, 0.8 = strong
    returnable: bool = True
    exchangeable: bool = True
    sizes: tuple[str, ...] = ()


SHOE_SIZES = tuple(f"{s}码" for s in ("36", "37", "38", "39", "40", "41", "42", "42.5", "43", "44", "45", "46"))
APPAREL_SIZES = ("XS", "S", "M", "L", "XL", "XXL")
ONE_SIZE = ("均码",)

CATEGORIES: tuple[CategorySpec, ...] = (
    CategorySpec("running_shoes", "跑鞋", "running shoes", "shoes", (299, 1299), 4, 0.3, sizes=SHOE_SIZES),
    CategorySpec("running_apparel", "跑步服饰", "running apparel", "apparel", (79, 399), 5, 0.4, sizes=APPAREL_SIZES),
    CategorySpec("socks", "运动袜", "sports socks", "none", (29, 89), 6, 0.0, returnable=False, sizes=("S", "M", "L")),
    CategorySpec("basketball_shoes", "篮球鞋", "basketball shoes", "shoes", (399, 1499), 7, 0.2, sizes=SHOE_SIZES),
    CategorySpec("basketball", "篮球", "basketballs", "none", (99, 399), 7, 0.2, sizes=("7号", "6号")),
    CategorySpec("fitness_apparel", "健身服", "training apparel", "apparel", (89, 299), 1, 0.3, sizes=APPAREL_SIZES),
    CategorySpec("fitness_equipment", "健身器材", "fitness equipment", "none", (59, 999), 1, 0.5, sizes=ONE_SIZE),
    CategorySpec("yoga", "瑜伽", "yoga", "apparel", (59, 399), 3, 0.2, sizes=APPAREL_SIZES),
    CategorySpec("outdoor_jackets", "户外冲锋衣", "outdoor jackets", "apparel", (399, 1599), 12, 0.8, sizes=APPAREL_SIZES),
    CategorySpec("hiking_shoes", "徒步鞋", "hiking shoes", "shoes", (399, 1199), 10, 0.5, sizes=SHOE_SIZES),
    CategorySpec("bottles", "运动水壶", "water bottles", "none", (39, 159), 7, 0.3, sizes=ONE_SIZE),
    CategorySpec("swimming", "游泳", "swimming", "apparel", (79, 399), 7, 0.9, sizes=APPAREL_SIZES),
    CategorySpec("cycling", "骑行", "cycling", "apparel", (99, 899), 5, 0.5, sizes=APPAREL_SIZES),
    CategorySpec("badminton", "羽毛球", "badminton", "none", (99, 899), 3, 0.1, sizes=("3U", "4U")),
    CategorySpec("nutrition", "运动营养", "sports nutrition", "none", (49, 299), 1, 0.1,
                 returnable=False, exchangeable=False, sizes=ONE_SIZE),
)
BY_CODE = {c.code: c for c in CATEGORIES}

# What shoppers buy together (category → [(complement, probability)]); drives the seeder.
COMPLEMENTS: dict[str, tuple[tuple[str, float], ...]] = {
    "running_shoes": (("socks", 0.5), ("running_apparel", 0.4), ("bottles", 0.35)),
    "running_apparel": (("socks", 0.3), ("bottles", 0.2)),
    "basketball_shoes": (("socks", 0.4), ("basketball", 0.35), ("bottles", 0.15)),
    "basketball": (("basketball_shoes", 0.2),),
    "hiking_shoes": (("socks", 0.4), ("outdoor_jackets", 0.35), ("bottles", 0.3)),
    "outdoor_jackets": (("hiking_shoes", 0.25), ("bottles", 0.2)),
    "yoga": (("fitness_apparel", 0.35), ("bottles", 0.2)),
    "fitness_apparel": (("fitness_equipment", 0.25), ("nutrition", 0.3), ("bottles", 0.25)),
    "fitness_equipment": (("nutrition", 0.3), ("fitness_apparel", 0.25)),
    "swimming": (("bottles", 0.15),),
    "cycling": (("bottles", 0.45), ("nutrition", 0.2)),
    "badminton": (("socks", 0.3), ("bottles", 0.2)),
}
# Categories people come for (a basket's first item); the rest are add-ons.
PRIMARY = tuple(COMPLEMENTS)
CONSUMABLES = frozenset({"socks", "nutrition", "bottles"})

BRANDS = ("疾风", "Stride", "山野", "Apex", "浪花", "Volt", "青锋", "Nimbus")
MODEL_WORDS = (
    ("轻风", "AirFly"), ("缓震", "Cushion"), ("竞速", "Racer"), ("云跑", "Cloud"), ("疾速", "Swift"),
    ("飞跃", "Leap"), ("巅峰", "Summit"), ("领航", "Pilot"), ("灵动", "Flex"), ("极光", "Aurora"),
    ("磐石", "Rock"), ("迅影", "Shadow"), ("星河", "Galaxy"), ("暖阳", "Sunny"), ("风暴", "Storm"),
)
COLOURS = ("黑色", "白色", "灰色", "蓝色", "红色", "绿色", "粉色", "藏青")
COLOURS_EN = {"黑色": "black", "白色": "white", "灰色": "grey", "蓝色": "blue", "红色": "red",
              "绿色": "green", "粉色": "pink", "藏青": "navy"}
