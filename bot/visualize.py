"""``python -m bot visualize``: the story graph as one self-contained ``graph.html`` (Rasa's ``rasa visualize``).

Every story (checkpoints and ``or`` expanded, no augmentation) becomes a path of user
intents and bot actions from START to END. As in Rasa, steps are merged where their last
``--max-history`` steps agree, so shared openings and shared endings appear once. The page
is inline SVG with a legend and the list of stories: no script, no CDN, opens offline.
"""
from __future__ import annotations

import html
import logging
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from bot.shared.constants import ACTION_LISTEN_NAME, ACTION_SESSION_START_NAME
from bot.shared.events import ActionExecuted, UserUttered

logger = logging.getLogger(__name__)

GRAPH_FILE = "graph.html"
START, END = ("START",), ("END",)
_KIND_STYLE = {
    "intent": ("#e8f1fb", "#2f6db5"),
    "action": ("#fdf1e3", "#c0711b"),
    "terminal": ("#eeeeee", "#555555"),
}


@dataclass
class StoryGraphView:
    """Nodes (key → (kind, label)), edges (key pairs) and each story's label path."""

    nodes: dict[tuple, tuple[str, str]] = field(default_factory=dict)
    edges: set[tuple[tuple, tuple]] = field(default_factory=set)
    stories: list[tuple[str, list[tuple[str, str]]]] = field(default_factory=list)


def story_paths(trackers: Sequence[Any]) -> list[tuple[str, list[tuple[str, str]]]]:
    """(story name, [(kind, label), ...]) per tracker: intents and actions, listens dropped."""
    out = []
    for t in trackers:
        steps: list[tuple[str, str]] = []
        for e in t.events:
            if isinstance(e, UserUttered):
                label = e.intent_name or (e.text or "")
                steps.append(("intent", label))
            elif isinstance(e, ActionExecuted):
                name = e.action_name or e.action_text or ""
                if name in (ACTION_LISTEN_NAME, ACTION_SESSION_START_NAME):
                    continue
                steps.append(("action", name))
        out.append((str(getattr(t, "sender_id", "story")), steps))
    return out


def build_graph(paths: list[tuple[str, list[tuple[str, str]]]], max_history: int = 2) -> StoryGraphView:
    view = StoryGraphView()
    view.nodes[START] = ("terminal", "START")
    view.nodes[END] = ("terminal", "END")
    history = max(1, max_history)
    for name, steps in paths:
        view.stories.append((name, steps))
        previous = START
        for i, (kind, label) in enumerate(steps):
            context = tuple(f"{k}:{lab}" for k, lab in steps[max(0, i - history + 1):i + 1])
            key = context  # shorter only at a story's start, so openings merge with openings
            view.nodes.setdefault(key, (kind, label))
            view.edges.add((previous, key))
            previous = key
        view.edges.add((previous, END))
    return view


def _layers(view: StoryGraphView) -> dict[tuple, int]:
    """Layer of each node: its shortest distance from START (END on the last layer)."""
    successors: dict[tuple, list[tuple]] = defaultdict(list)
    for a, b in sorted(view.edges, key=str):
        successors[a].append(b)
    depth = {START: 0}
    frontier = [START]
    while frontier:
        nxt = []
        for node in frontier:
            for s in successors[node]:
                if s not in depth and s != END:
                    depth[s] = depth[node] + 1
                    nxt.append(s)
        frontier = nxt
    depth[END] = max(depth.values()) + 1
    for node in view.nodes:  # unreachable (cannot happen for story paths) → last layer
        depth.setdefault(node, depth[END])
    return depth


def render_svg(view: StoryGraphView) -> str:
    depth = _layers(view)
    by_layer: dict[int, list[tuple]] = defaultdict(list)
    for node in sorted(view.nodes, key=lambda n: (depth[n], str(n))):
        by_layer[depth[node]].append(node)
    row_h, box_h, gap = 70, 30, 24
    widths = {n: max(60, 8 * len(view.nodes[n][1]) + 20) for n in view.nodes}
    layer_w = {d: sum(widths[n] for n in ns) + gap * (len(ns) - 1) for d, ns in by_layer.items()}
    total_w = max(layer_w.values()) + 40
    pos: dict[tuple, tuple[float, float]] = {}
    for d, ns in by_layer.items():
        x = (total_w - layer_w[d]) / 2
        for n in ns:
            pos[n] = (x + widths[n] / 2, 20 + d * row_h + box_h / 2)
            x += widths[n] + gap
    height = 40 + (max(by_layer) + 1) * row_h
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{total_w:.0f}" height="{height}" '
             f'font-family="sans-serif" font-size="13">',
             '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" '
             'orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#777"/></marker></defs>']
    for a, b in sorted(view.edges, key=str):
        (x1, y1), (x2, y2) = pos[a], pos[b]
        if depth[b] > depth[a]:
            parts.append(f'<line x1="{x1:.0f}" y1="{y1 + box_h / 2:.0f}" x2="{x2:.0f}" y2="{y2 - box_h / 2:.0f}" '
                         f'stroke="#777" marker-end="url(#arrow)"/>')
        else:  # an edge back up (a loop): curve around the right side
            cx = max(x1, x2) + 80
            parts.append(f'<path d="M{x1 + widths[a] / 2:.0f},{y1:.0f} C{cx:.0f},{y1:.0f} {cx:.0f},{y2:.0f} '
                         f'{x2 + widths[b] / 2:.0f},{y2:.0f}" fill="none" stroke="#aaa" stroke-dasharray="4 3" '
                         f'marker-end="url(#arrow)"/>')
    for n, (kind, label) in view.nodes.items():
        x, y = pos[n]
        fill, stroke = _KIND_STYLE[kind]
        rx = 15 if kind != "action" else 3
        w = widths[n]
        parts.append(f'<g class="{kind}"><title>{html.escape(kind)}: {html.escape(label)}</title>'
                     f'<rect x="{x - w / 2:.0f}" y="{y - box_h / 2:.0f}" width="{w}" height="{box_h}" rx="{rx}" '
                     f'fill="{fill}" stroke="{stroke}"/>'
                     f'<text x="{x:.0f}" y="{y + 4:.0f}" text-anchor="middle">{html.escape(label)}</text></g>')
    parts.append("</svg>")
    return "".join(parts)


def render_html(view: StoryGraphView, title: str = "Story graph") -> str:
    stories = "".join(
        f"<li><b>{html.escape(name)}</b>: "
        + " → ".join(f'<span class="{k}">{html.escape(lab)}</span>' for k, lab in steps)
        + "</li>"
        for name, steps in view.stories
    )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body {{ font-family: sans-serif; margin: 1.5em; color: #222; }}
.legend span, li span {{ padding: 1px 6px; border-radius: 8px; }}
span.intent {{ background: {_KIND_STYLE["intent"][0]}; border: 1px solid {_KIND_STYLE["intent"][1]}; }}
span.action {{ background: {_KIND_STYLE["action"][0]}; border: 1px solid {_KIND_STYLE["action"][1]}; border-radius: 2px; }}
.graph {{ overflow: auto; border: 1px solid #ddd; padding: 8px; }}
li {{ margin: 4px 0; line-height: 1.8; }}
</style></head><body>
<h1>{html.escape(title)}</h1>
<p class="legend"><span class="intent">user intent</span> <span class="action">bot action</span>
 — steps whose last steps agree are drawn once; dashed arrows go back to an earlier step.</p>
<div class="graph">{render_svg(view)}</div>
<h2>Stories ({len(view.stories)})</h2>
<ol>{stories}</ol>
</body></html>
"""


def visualize(
    root: str | Path = ".",
    stories: list[str | Path] | None = None,
    domain: str | Path | None = None,
    config: str | Path | None = None,
    out: str | Path = GRAPH_FILE,
    max_history: int = 2,
) -> tuple[Path, StoryGraphView]:
    """Write the story graph of ``stories`` (default: the project's stories) to ``out``."""
    from bot.dialogue.generator import TrainingDataGenerator
    from bot.shared.importer import ProjectImporter
    from bot.shared.training_data.story_graph import StoryGraph

    importer = ProjectImporter.from_paths(root, config, domain, stories)
    project_domain = importer.get_domain()
    steps = importer.get_story_steps(project_domain)
    generator = TrainingDataGenerator(StoryGraph(steps), project_domain, augmentation_factor=0,
                                      use_story_concatenation=False)
    trackers = generator.generate_story_trackers()
    view = build_graph(story_paths(trackers), max_history)
    target = Path(out)
    if target.is_dir() or not target.suffix:
        target = target / GRAPH_FILE
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(render_html(view, f"Stories of {Path(root).resolve().name}"), encoding="utf-8")
    return target, view
