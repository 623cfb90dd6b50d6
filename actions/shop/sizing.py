"""Size advice from per-category size charts, with the reason in words.

Shoes go by foot length (EU size ≈ 1.5 × (foot length cm + 1.5), the usual
last allowance), adjusted per category: running shoes half a size up (feet
swell on long runs), hiking shoes half a size up (thick socks). Apparel goes by
chest when given, else by height and weight; outdoor jackets size up when
between sizes (layers underneath), yoga and training wear stay snug.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Optional

from actions.shop.catalog import BY_CODE

APPAREL_CHART = (  # size, max height cm, max weight kg, max chest cm
    ("XS", 160, 50, 84), ("S", 167, 58, 90), ("M", 174, 67, 96), ("L", 180, 76, 102),
    ("XL", 186, 86, 108), ("XXL", 250, 400, 999),
)
SHOE_UP = {"running_shoes": 0.5, "hiking_shoes": 0.5}
SIZE_UP_WHEN_BETWEEN = {"outdoor_jackets"}


@dataclass(frozen=True)
class SizeAdvice:
    size: str
    reason_zh: str
    reason_en: str


@dataclass(frozen=True)
class Measurements:
    foot_cm: Optional[float] = None
    height_cm: Optional[float] = None
    weight_kg: Optional[float] = None
    chest_cm: Optional[float] = None


def parse_measurements(text: str) -> Measurements:
    """Foot length, height, weight and chest from free text in zh or en."""
    t = text.lower().replace("厘米", "cm").replace("公分", "cm").replace("公斤", "kg").replace("千克", "kg")

    def find(pattern: str) -> Optional[float]:
        m = re.search(pattern, t)
        return float(m.group(1)) if m else None

    foot = find(r"(?:脚长|foot(?: length)?|feet)\D{0,6}(\d{2}(?:\.\d)?)") or find(r"(?<!\d)(2\d(?:\.\d)?)\s*cm")
    height = find(r"(?:身高|height|tall)\D{0,6}(1\d{2}|2[0-2]\d)") or find(r"(?<!\d)(1[4-9]\d|2[01]\d)\s*cm")
    weight = find(r"(?:体重|weight|weigh)\D{0,6}(\d{2,3}(?:\.\d)?)") or find(r"(\d{2,3}(?:\.\d)?)\s*kg")
    jin = find(r"(\d{2,3})\s*斤")
    if weight is None and jin is not None:
        weight = jin / 2
    chest = find(r"(?:胸围|chest)\D{0,6}(\d{2,3})")
    if foot is not None and not 15 <= foot <= 33:
        foot = None
    return Measurements(foot, height, weight, chest)


def advise(category: str, m: Measurements) -> Optional[SizeAdvice]:
    """The size for this category, or None when the needed measurement is missing."""
    spec = BY_CODE.get(category)
    chart = spec.size_chart if spec else ("shoes" if m.foot_cm else "apparel")
    if chart == "shoes":
        if m.foot_cm is None:
            return None
        eu = 1.5 * (m.foot_cm + 1.5) + SHOE_UP.get(category, 0.0)
        size = math.floor(eu * 2 + 0.5) / 2
        label = f"{size:g}"
        zh = f"脚长 {m.foot_cm:g} cm 对应欧码约 {1.5 * (m.foot_cm + 1.5):.1f}"
        en = f"a {m.foot_cm:g} cm foot is about EU {1.5 * (m.foot_cm + 1.5):.1f}"
        if category in SHOE_UP:
            zh += "；" + ("跑步时脚会肿胀，建议大半码" if category == "running_shoes" else "徒步要穿厚袜，建议大半码")
            en += "; " + ("feet swell on runs, so half a size up" if category == "running_shoes" else "hiking socks are thick, so half a size up")
        return SizeAdvice(f"{label}码", zh + "。", en + ".")
    if chart != "apparel":
        return SizeAdvice("均码", "这件商品是均码，不用选尺码。", "This item is one size.")
    if m.chest_cm is not None:
        idx = next(i for i, row in enumerate(APPAREL_CHART) if m.chest_cm <= row[3])
        basis_zh, basis_en = f"胸围 {m.chest_cm:g} cm", f"a {m.chest_cm:g} cm chest"
    elif m.height_cm is not None or m.weight_kg is not None:
        by_h = next(i for i, row in enumerate(APPAREL_CHART) if (m.height_cm or 0) <= row[1])
        by_w = next(i for i, row in enumerate(APPAREL_CHART) if (m.weight_kg or 0) <= row[2])
        idx = max(by_h, by_w) if category in SIZE_UP_WHEN_BETWEEN else (min(by_h, by_w) if category in ("yoga", "fitness_apparel") else max(by_h, by_w))
        bits_zh = [f"身高 {m.height_cm:g} cm" if m.height_cm else "", f"体重 {m.weight_kg:g} kg" if m.weight_kg else ""]
        bits_en = [f"{m.height_cm:g} cm tall" if m.height_cm else "", f"{m.weight_kg:g} kg" if m.weight_kg else ""]
        basis_zh, basis_en = "、".join(b for b in bits_zh if b), " and ".join(b for b in bits_en if b)
    else:
        return None
    size = APPAREL_CHART[idx][0]
    zh = f"按{basis_zh}，尺码表对应 {size}"
    en = f"for {basis_en} the size chart gives {size}"
    if category in SIZE_UP_WHEN_BETWEEN:
        zh += "；冲锋衣里面要穿抓绒，介于两码之间时选大一码"
        en += "; jackets go over a fleece, so between sizes we take the larger"
    elif category in ("yoga", "fitness_apparel"):
        zh += "；瑜伽/健身服宜贴身，介于两码之间时选小一码"
        en += "; yoga and training wear should be snug, so between sizes we take the smaller"
    return SizeAdvice(size, zh + "。", en + ".")
