"""``python -m bot interactive``: Rasa's interactive learning in the terminal.

Chat with a local model; after each message confirm or correct the intent, then confirm or
correct every action the policies predict (the corrected action is the one that runs).
``/stop`` (or the end of input) asks whether to save: the messages go into the project's
NLU data as examples of the confirmed intents, the conversation into a stories file as a
training story, each through the workbench's annotator (additions only, ``data
validate`` on each save). ``/restart`` starts over (the story so far is kept); ``/undo``
is not offered: correct the prediction when it is asked instead.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Callable

from bot.shared.concurrency import run_blocking
from bot.shared.message import CollectingOutputChannel

logger = logging.getLogger(__name__)

LISTEN = "action_listen"
Ask = Callable[[str], str]


def _choose(answer: str, options: list[str], allowed: set[str]) -> str | None:
    """'' → the first option; a 1-based number → that option; a name in ``allowed`` → it; else None."""
    answer = answer.strip()
    if not answer or answer.lower() in ("y", "yes", "是"):
        return options[0] if options else None
    if answer.isdigit() and 1 <= int(answer) <= len(options):
        return options[int(answer) - 1]
    return answer if answer in allowed else None


class InteractiveSession:
    """One terminal session over a loaded agent; ``ask`` reads a line (``input`` by default)."""

    def __init__(self, agent: Any, root: Path, ask: Ask = input, out: Callable[[str], None] = print,
                 sender: str = "interactive") -> None:
        self.agent = agent
        self.root = Path(root)
        self.ask = ask
        self.out = out
        self.sender = sender
        self.examples: list[tuple[str, str, list[dict[str, Any]]]] = []
        self.steps: list[dict[str, Any]] = []

    async def _ask(self, prompt: str) -> str:
        return await run_blocking(self.ask, prompt)

    async def _confirm_intent(self, parse: dict[str, Any], domain: Any) -> str:
        ranking = [r["name"] for r in parse.get("intent_ranking") or [] if r.get("name")]
        top = (parse.get("intent") or {}).get("name")
        options = [top] + [r for r in ranking if r != top] if top else ranking
        confidences = {r["name"]: r.get("confidence", 0.0) for r in parse.get("intent_ranking") or []}
        self.out(f"  NLU: {top} ({float((parse.get('intent') or {}).get('confidence') or 0):.2f})")
        for n, name in enumerate(options[:5], 1):
            self.out(f"    {n}. {name} {float(confidences.get(name, 0.0)):.2f}")
        while True:
            answer = await self._ask("  Intent correct? [Enter=yes / number / intent name]: ")
            chosen = _choose(answer, options[:5], set(domain.intents))
            if chosen:
                return chosen
            self.out(f"  '{answer.strip()}' is not a listed number or a domain intent "
                     f"({', '.join(i for i in domain.intents if not i.startswith('nlu_'))}).")

    async def _confirm_action(self, predicted: str, policy: str | None, confidence: float, domain: Any) -> str:
        self.out(f"  Next action: {predicted} ({policy or '-'} {confidence:.2f})")
        while True:
            answer = await self._ask("  Correct? [Enter=yes / action name / ? lists them]: ")
            if answer.strip() == "?":
                actions = [a for a in domain.action_names_or_texts if a == LISTEN or not a.startswith("action_")
                           or a in getattr(domain, "user_actions", [])]
                self.out("    " + ", ".join(actions))
                continue
            chosen = _choose(answer, [predicted], set(domain.action_names_or_texts))
            if chosen:
                return chosen
            self.out(f"  '{answer.strip()}' is not an action of the domain (? lists them).")

    async def turn(self, text: str) -> None:
        from bot.dialogue.processor import Prediction
        from bot.shared.events import UserUttered

        processor = self.agent.processor
        domain = processor.domain
        channel = CollectingOutputChannel()
        tracker = await processor.fetch_tracker_and_update_session(self.sender, channel)
        parse = await processor.parse_text(text)
        intent = await self._confirm_intent(parse, domain)
        entities = [e for e in parse.get("entities") or [] if "start" in e and "end" in e]
        parse = {**parse, "intent": {"name": intent, "confidence": 1.0}}
        tracker.update(UserUttered(text, parse["intent"], entities, parse), domain)
        await processor._run_action_extract_slots(tracker, channel)
        if not text.startswith("/"):
            self.examples.append((text, intent, entities))
        self.steps.append({"intent": intent, **({"entities": [{e["entity"]: e.get("value")} for e in entities]}
                                                 if entities else {})})
        for _ in range(processor.max_number_of_predictions):
            prediction = await processor.predict_next_action(tracker)
            chosen = await self._confirm_action(prediction.action_name, prediction.policy_name,
                                                prediction.confidence, domain)
            if chosen != prediction.action_name:
                prediction = Prediction(chosen, "interactive", 1.0)
            before = len(channel.messages)
            more = await processor.run_action(processor.action_for(chosen), tracker, channel, prediction)
            for message in channel.messages[before:]:
                self.out("客服/Bot: " + (message.get("text") or str({k: v for k, v in message.items()
                                                                       if k != "recipient_id"})))
            if chosen == LISTEN or not more:
                break
            self.steps.append({"action": chosen})
        await processor.save_tracker(tracker)

    async def run(self) -> int:
        self.out("kefu interactive learning — chat, confirm or correct each prediction; /stop saves, "
                 "/restart starts over.")
        while True:
            try:
                text = (await self._ask("您/You: ")).strip()
            except EOFError:
                break
            if not text:
                continue
            if text == "/stop":
                break
            if text == "/restart":
                await self.agent.handle_text("/restart", sender_id=self.sender)
                self.out("  (restarted)")
                continue
            await self.turn(text)
        return await self.save()

    async def save(self) -> int:
        if not self.examples and not self.steps:
            self.out("Nothing to save.")
            return 0
        try:
            answer = (await self._ask(f"Save {len(self.examples)} NLU example(s) and the story? [Y/n]: ")).strip()
        except EOFError:
            answer = ""
        if answer.lower() in ("n", "no", "否"):
            self.out("Not saved.")
            return 0
        from bot.workbench.annotate import AnnotationRejected, Annotator
        from bot.workbench.config import WorkbenchConfig

        annotator = Annotator(self.root, WorkbenchConfig.for_project(self.root))
        failures = 0
        for text, intent, entities in self.examples:
            try:
                result = await run_blocking(annotator.add_example, text, intent, entities)
                self.out(f"  NLU: {result.file}:{result.line} {result.added.strip()}")
            except AnnotationRejected as e:
                failures += 1
                self.out(f"  NLU example '{text}' not saved: {e} {' '.join(e.findings)}")
        stories = stories_file(self.root)
        name = f"interactive {time.strftime('%Y-%m-%d %H:%M:%S')}"
        try:
            result = await run_blocking(annotator.save_story_to, stories, name, self.steps)
            self.out(f"  Story: {result.file}:{result.line}")
        except AnnotationRejected as e:
            failures += 1
            self.out(f"  Story not saved: {e} {' '.join(e.findings)}")
        self.out("Retrain with `python -m bot train` (or the workbench's gate: `python -m bot models train`).")
        return 1 if failures else 0


def stories_file(root: Path) -> Path:
    """The project's first training file with ``stories:``, else data/stories.yml."""
    from bot.shared.importer import ProjectImporter

    importer = ProjectImporter.from_paths(root)
    for path in importer.story_files:
        if "stories:" in path.read_text(encoding="utf-8"):
            return path
    return root / "data" / "stories.yml"


async def run_interactive(model: str | None, root: str, endpoints: str | None, sender: str = "interactive") -> int:
    from bot.agent import Agent

    agent = await Agent.create(model, endpoints if endpoints and Path(endpoints).exists() else None,
                               project_root=root)
    try:
        if agent.processor is None or agent.processor.ensemble is None:
            print("interactive needs a model with dialogue policies (this one is NLU-only).")
            return 2
        return await InteractiveSession(agent, Path(root), sender=sender).run()
    finally:
        await agent.close()
