"""NLU regexes and lookup tables generated from shop.yml (`python -m actions.shop nlu`).

Rasa's training data cannot read a configuration file, so the shop's formats and
vocabulary are written into one generated NLU file (`nlu_data/nlu/shop_generated.yml`
by default) that trains with the rest; `--check` fails when it is out of date with
shop.yml (tests run it). Lookup entries that overlap an entry of another entity's
lookup table (equal, inside it, or containing it) are left out, so a word is never
extracted as two entities.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable, Optional

from actions.shop.base import ShopDataError
from actions.shop.config import ShopConfig

GENERATED = Path("nlu_data/nlu/shop_generated.yml")
HEADER = ("# GENERATED from shop.yml by `python -m actions.shop nlu`; edit shop.yml, then rerun it.\n"
          "# Order-id and phone formats (regexes) and the shop's colours and categories (lookups).\n")
MIN_EN_LOOKUP = 5  # short English words ("red", "tan") fire inside other words: lookups match without boundaries


def claimed_lookups(files: Iterable[Path]) -> dict[str, set[str]]:
    """entity → lookup entries, from the project's other NLU files."""
    from ruamel.yaml import YAML

    claimed: dict[str, set[str]] = {}
    for path in files:
        try:
            data = YAML(typ="safe").load(path.read_text(encoding="utf-8")) or {}
        except Exception as e:  # noqa: BLE001 - any YAML error is the file's
            raise ShopDataError(f"{path}: cannot read it to avoid duplicate lookups ({e}). Fix the YAML.") from e
        for item in data.get("nlu") or []:
            if isinstance(item, dict) and item.get("lookup"):
                words = [line.strip()[2:].strip() for line in str(item.get("examples") or "").splitlines()
                         if line.strip().startswith("- ")]
                claimed.setdefault(str(item["lookup"]), set()).update(words)
    return claimed


def generate(config: ShopConfig, others: Optional[Iterable[Path]] = None) -> str:
    """The generated NLU file's text."""
    claimed = claimed_lookups(others or [])

    def free(entity: str, words: Iterable[str]) -> list[str]:
        taken = set().union(*(v for k, v in claimed.items() if k != entity)) if claimed else set()
        out: list[str] = []
        for w in words:
            w = str(w).strip()
            ascii_word = w.isascii()
            overlaps = any(w in t or t in w for t in taken)  # "篮球" would fire inside the product "篮球鞋"
            if w and not overlaps and w not in out and (not ascii_word or len(w) >= MIN_EN_LOOKUP):
                out.append(w)
        return out

    colours = free("color", [w for zh, en in config.colours.items() for w in (zh, en)])
    categories = free("category", [w for c in config.categories for w in (c.name.zh, c.name.en)])
    blocks: list[tuple[str, str, list[str]]] = [
        ("regex", "order_id", [config.order_id_pattern]),
        ("regex", "phone", [config.phone_pattern]),
    ]
    if colours:
        blocks.append(("lookup", "color", colours))
    if categories:
        blocks.append(("lookup", "category", categories))
    lines = [HEADER.rstrip("\n"), 'version: "3.1"', "nlu:"]
    for kind, name, examples in blocks:
        lines.append(f"- {kind}: {name}")
        lines.append("  examples: |")
        lines.extend(f"    - {e}" for e in examples)
        lines.append("")
    return "\n".join(lines)


def nlu_files(root: Path, generated: Path) -> list[Path]:
    """The project's NLU files other than the generated one (nlu_data/ or data/)."""
    found: list[Path] = []
    for folder in ("nlu_data", "data"):
        base = root / folder
        if base.exists():
            found += [p for p in sorted(base.rglob("*.yml")) if p.resolve() != generated.resolve()]
    return found


def write_or_check(config: ShopConfig, root: Path, out: Optional[Path] = None, *, check: bool = False) -> tuple[Path, bool]:
    """(path, changed): write the generated file, or with `check` only say whether it differs."""
    default = GENERATED if (root / "nlu_data").exists() or not (root / "data").exists() else Path("data/shop_generated.yml")
    target = (root / (out or default)) if not (out and out.is_absolute()) else out
    text = generate(config, nlu_files(root, target))
    current = target.read_text(encoding="utf-8") if target.exists() else None
    changed = current != text
    if changed and not check:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
    return target, changed

