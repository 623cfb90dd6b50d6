"""Public Rasa 3 projects and Rasa's example bots on kefu, beside what Rasa 3.6 did with them.

Issue #16 points 2 and 3: each project trains unchanged, its test stories pass at least as
often as on Rasa, training takes a fraction of Rasa's time, and the ResponseSelector and the
TEDPolicy are at least as good as Rasa's where a project uses them.

For each project the script copies it into a temporary folder and, as a Rasa user would:

- ``python -m bot train`` with the project's own flags (``-v``): wall seconds, CPU seconds of
  the training process (user + system, from ``getrusage(RUSAGE_CHILDREN)``), and the NLU and
  policy parts read from its log;
- ``python -m bot test core --stories ...``: stories passed / total and action accuracy, on the
  project's test stories; where a project ships none (ki-campus-kim, return-visit-robot-zh,
  Rasa's concertbot/moodbot/responseselectorbot) its own training stories are walked instead
  (``own_stories``: a fit measure, no Rasa figure exists for it);
- in this process, the trained model's NLU parses every training example back: the intent
  the classifier chose (a FallbackClassifier's ``nlu_fallback`` undone, as ``rasa test nlu``
  scores) and, for retrieval intents (``faq/ask_x``), the ResponseSelector's
  ``intent_response_key``. Texts written under two intents are not counted. None of these
  projects ships held-out NLU test data (no ``tests/*nlu*``), so no held-out figure is given.

Rasa cannot be installed here (Python 3.11; Rasa 3.6 needs ≤ 3.10): the Rasa figures are the
ones recorded in ``../shared/benchmarks/rasa_projects/README.md`` (Rasa 3.6.21 on a 2-core
machine; those marked ``busy`` were taken on a busy machine). Rasa's example bots have no
recorded Rasa figures (``rasa`` fields are null there).

Config edits (copies only, as tests/integration/test_rasa_examples.py makes them): formbot and
rules drop DucklingEntityExtractor (needs a Duckling server); moodbot's spaCy components are
replaced by WhitespaceTokenizer + CountVectorsFeaturizer (the model cannot be installed
offline). Every edit is listed in the JSON.

Take figures under the shared lock, one project group per hold (≤ 15 min):

    flock /work/bench.lock .venv/bin/python benchmarks/rasa_projects.py --projects ecommerce-chatbot
    .venv/bin/python benchmarks/rasa_projects.py --list

Results are merged into ``benchmarks/results/rasa_projects.json`` (one entry per project, the
newest run replaces the project's previous entry), with the load average before and after.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "benchmarks"
PROJECTS_DIR = SHARED / "rasa_projects"
EXAMPLES_DIR = SHARED / "rasa_examples"
RESULTS = ROOT / "benchmarks" / "results" / "rasa_projects.json"
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # this tree's bot, not an installed copy


def _drop(names: set[str]) -> Callable[[dict[str, Any]], str]:
    def edit(config: dict[str, Any]) -> str:
        config["pipeline"] = [c for c in config.get("pipeline") or [] if c.get("name") not in names]
        return f"removed {sorted(names)} from the pipeline"
    return edit


def _no_spacy(config: dict[str, Any]) -> str:
    pipeline = [c for c in config["pipeline"] if not str(c.get("name")).startswith("Spacy")]
    config["pipeline"] = [{"name": "WhitespaceTokenizer"}, {"name": "CountVectorsFeaturizer"}, *pipeline]
    return "spaCy components replaced by WhitespaceTokenizer + CountVectorsFeaturizer"


@dataclass(frozen=True)
class Project:
    name: str
    path: Path
    train_args: tuple[str, ...] = ()
    test_stories: str | None = "tests/test_stories.yml"  # None: walk data/ stories instead
    rasa_passed: int | None = None
    rasa_total: int | None = None
    rasa_train_s: float | None = None
    rasa_busy: bool = False
    config_edit: Callable[[dict[str, Any]], str] | None = None
    uses: tuple[str, ...] = field(default_factory=tuple)


# Rasa's figures: ../shared/benchmarks/rasa_projects/README.md (Rasa 3.6.21, 2 cores)
PROJECTS = [
    Project("dapp-0-bot", PROJECTS_DIR / "dapp-0-bot", ("--domain", "domain"), rasa_passed=6, rasa_total=6,
            rasa_train_s=87, rasa_busy=True),
    Project("mahburger", PROJECTS_DIR / "mahburger", rasa_passed=3, rasa_total=3, rasa_train_s=147),
    Project("turkish-chatbot", PROJECTS_DIR / "turkish-chatbot", rasa_passed=0, rasa_total=1, rasa_train_s=130),
    Project("knowledge-base-fr", PROJECTS_DIR / "knowledge-base-fr", rasa_passed=1, rasa_total=1, rasa_train_s=115),
    Project("robocorp-example", PROJECTS_DIR / "robocorp-example", rasa_passed=7, rasa_total=7, rasa_train_s=92),
    Project("retrieval-lunr", PROJECTS_DIR / "retrieval-lunr", rasa_passed=7, rasa_total=7, rasa_train_s=70),
    Project("ecommerce-chatbot", PROJECTS_DIR / "ecommerce-chatbot", rasa_passed=7, rasa_total=7, rasa_train_s=574),
    Project("return-visit-robot-zh", PROJECTS_DIR / "return-visit-robot-zh", test_stories=None,
            rasa_train_s=298, rasa_busy=True),
    Project("ki-campus-kim", PROJECTS_DIR / "ki-campus-kim", test_stories=None, rasa_train_s=1175, rasa_busy=True),
    # Rasa's own example bots that use TEDPolicy or ResponseSelector (no Rasa figures recorded)
    Project("initial_project", EXAMPLES_DIR / "initial_project_rasa_3.6.21"),
    Project("formbot", EXAMPLES_DIR / "examples" / "formbot", config_edit=_drop({"DucklingEntityExtractor"})),
    Project("concertbot", EXAMPLES_DIR / "examples" / "concertbot", test_stories=None),
    Project("moodbot", EXAMPLES_DIR / "examples" / "moodbot", test_stories=None, config_edit=_no_spacy),
    Project("responseselectorbot", EXAMPLES_DIR / "examples" / "responseselectorbot", test_stories=None),
]
BY_NAME = {p.name: p for p in PROJECTS}


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def _child_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _run(args: list[str], cwd: Path, timeout: int) -> tuple[subprocess.CompletedProcess[str], float, float]:
    env = dict(os.environ, PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
               TOKENIZERS_PARALLELISM="false")
    cpu0, wall0 = _child_cpu(), time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "bot", *args], cwd=cwd, env=env, text=True,
                          capture_output=True, timeout=timeout)
    return done, time.perf_counter() - wall0, _child_cpu() - cpu0


def _phases(log: str) -> dict[str, Any]:
    """NLU and policy seconds (each part's own log line), and whether they overlapped."""
    nlu = re.search(r"Trained NLU pipeline \(.*\) in ([\d.]+)s", log)
    core = re.search(r"Trained the policies in ([\d.]+)s", log)
    return {"nlu_s": float(nlu.group(1)) if nlu else None,
            "policies_s": float(core.group(1)) if core else None,
            "policies_beside_nlu": "policies in a second process" in log}


def _config_names(root: Path) -> dict[str, list[str]]:
    from bot.shared.yaml_io import read_yaml_file, to_plain

    raw = to_plain(read_yaml_file(root / "config.yml")) or {}
    return {section: [str(c.get("name")) for c in raw.get(section) or []] for section in ("pipeline", "policies")}


def _apply_edit(project: Project, root: Path) -> str | None:
    if project.config_edit is None:
        return None
    from bot.shared.yaml_io import read_yaml_file, to_plain, write_yaml

    config = to_plain(read_yaml_file(root / "config.yml"))
    note = project.config_edit(config)
    write_yaml(config, root / "config.yml")
    return note


def _working_copy(project: Project, work: Path) -> tuple[Path, str | None]:
    """The project copied into ``work`` (without trained models and results), its config edit
    applied: ``(root, the edit's note)``."""
    root = work / project.name
    shutil.copytree(project.path, root, ignore=shutil.ignore_patterns("models", "results", "__pycache__"))
    return root, _apply_edit(project, root)


def nlu_read_back(root: Path, archive: Path, train_args: tuple[str, ...]) -> dict[str, Any]:
    """Parse every training example with the trained model: intent and retrieval accuracy."""
    from bot.model.loader import LoadedModel
    from bot.shared.importer import ProjectImporter

    domain = None
    if "--domain" in train_args:
        domain = root / train_args[train_args.index("--domain") + 1]
    data = ProjectImporter.from_paths(root, None, domain, None).get_nlu_data()
    sys.path.insert(0, str(root))  # a custom policy (return-visit-robot-zh) imports from the project
    try:
        model = LoadedModel.load(archive)
    finally:
        sys.path.remove(str(root))
    try:
        if model.nlu is None:
            return {"examples": 0}
        intents_of: dict[str, set[str]] = {}
        for example in data.training_examples:
            intents_of.setdefault(example.text, set()).add(str(example.intent))
        counted = right = keys = right_keys = 0
        wrong: list[list[str]] = []
        wrong_keys: list[list[str]] = []
        for example in data.training_examples:
            if not example.intent or len(intents_of[example.text]) > 1:
                continue
            parsed = model.nlu.parse(example.text)
            ranking = parsed.get("intent_ranking") or [parsed["intent"]]
            chosen = next((r["name"] for r in ranking if r["name"] != "nlu_fallback"), parsed["intent"]["name"])
            counted += 1
            if chosen == example.intent:
                right += 1
            elif len(wrong) < 20:
                wrong.append([example.text, str(example.intent), str(chosen)])
            key = example.intent_response_key
            if key and key != example.intent:
                keys += 1
                selector = parsed.get("response_selector") or {}
                got = [v["response"]["intent_response_key"] for k, v in selector.items()
                       if k != "all_retrieval_intents"]
                if key in got:
                    right_keys += 1
                elif len(wrong_keys) < 20:
                    wrong_keys.append([example.text, key, ",".join(map(str, got))])
        return {
            "examples": counted,
            "intent_accuracy": round(right / counted, 4) if counted else None,
            "intent_wrong": wrong,
            "retrieval_examples": keys,
            "response_selector_accuracy": round(right_keys / keys, 4) if keys else None,
            "response_selector_wrong": wrong_keys,
            "held_out": None,
        }
    finally:
        model.close()


def run_project(project: Project, keep: Path | None) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix=f"kefu-bench-{project.name}-"))
    try:
        root, edit = _working_copy(project, work)
        names = _config_names(root)
        result: dict[str, Any] = {
            "project": project.name,
            "source": str(project.path.relative_to(SHARED.parent)),
            "train_args": list(project.train_args),
            "config_edit": edit,
            "uses": {"ResponseSelector": "ResponseSelector" in names["pipeline"],
                     "TEDPolicy": "TEDPolicy" in names["policies"],
                     "DIETClassifier": "DIETClassifier" in names["pipeline"]},
            "rasa": {"stories_passed": project.rasa_passed, "stories_total": project.rasa_total,
                     "train_s": project.rasa_train_s, "train_on_busy_machine": project.rasa_busy,
                     "source": "../shared/benchmarks/rasa_projects/README.md (Rasa 3.6.21)"
                     if project.rasa_train_s else None},
            "load_before": _load(),
        }
        trained, wall, cpu = _run(["train", "-v", *project.train_args], root, timeout=3600)
        result["train"] = {"ok": trained.returncode == 0, "wall_s": round(wall, 1), "cpu_s": round(cpu, 1),
                           **_phases(trained.stderr + trained.stdout)}
        result["load_after_train"] = _load()
        if trained.returncode != 0:
            result["train"]["error"] = (trained.stderr + trained.stdout)[-2000:]
            return result
        if project.rasa_train_s:
            result["train"]["fraction_of_rasa"] = round(wall / project.rasa_train_s, 3)
        archive = next((root / "models").glob("*.tar.gz"))
        stories = project.test_stories
        if stories is None:  # walk the project's own stories, from outside the project
            own = work / "own_stories"
            own.mkdir()
            for path in sorted((root / "data").rglob("*.yml")):
                text = path.read_text(encoding="utf-8")
                if re.search(r"^stories:", text, re.M):
                    (own / f"{len(list(own.iterdir()))}_{path.name}").write_text(text, encoding="utf-8")
            for sub in sorted(p for p in root.iterdir() if p.is_dir() and (p / "data").is_dir() and p.name != "data"):
                for path in sorted((sub / "data").rglob("*.yml")):  # MultiProjectImporter sub-projects
                    text = path.read_text(encoding="utf-8")
                    if re.search(r"^stories:", text, re.M):
                        (own / f"{len(list(own.iterdir()))}_{sub.name}_{path.name}").write_text(text, encoding="utf-8")
            stories = str(own)
        tested, test_wall, test_cpu = _run(
            ["test", "core", "--stories", stories, "--out", str(work / "results"), "--no-plot"], root, timeout=1800)
        story: dict[str, Any] = {"ok": tested.returncode == 0, "kind": "test_stories" if project.test_stories
                                 else "own_stories", "wall_s": round(test_wall, 1), "cpu_s": round(test_cpu, 1)}
        report_path = work / "results" / "story_report.json"
        if report_path.exists():
            report = json.loads(report_path.read_text(encoding="utf-8"))
            story["passed"] = report["conversation_accuracy"]["correct"]
            story["total"] = report["conversation_accuracy"]["total"]
            story["action_accuracy"] = report.get("accuracy") or report.get("weighted avg", {}).get("precision")
        else:
            story["error"] = (tested.stderr + tested.stdout)[-2000:]
        if project.rasa_total is not None and "passed" in story:
            story["at_least_rasa"] = story["passed"] >= project.rasa_passed
        result["stories"] = story
        result["nlu"] = nlu_read_back(root, archive, project.train_args)
        result["load_after"] = _load()
        if keep:
            keep.mkdir(parents=True, exist_ok=True)
            shutil.copy(archive, keep / f"{project.name}.tar.gz")
        return result
    finally:
        shutil.rmtree(work, ignore_errors=True)


def nlu_repeats(project: Project, times: int) -> dict[str, Any]:
    """Train the project's NLU ``times`` times (``train nlu``, no seed: each run draws its own,
    as Rasa's ``random_seed: null`` does) and read its training examples back after each."""
    work = Path(tempfile.mkdtemp(prefix=f"kefu-bench-{project.name}-nlu-"))
    try:
        root, _ = _working_copy(project, work)
        runs = []
        for i in range(times):
            out = work / f"run{i}"
            done, wall, cpu = _run(["train", "nlu", "--out", str(out), *project.train_args], root, timeout=3600)
            if done.returncode != 0:
                runs.append({"error": (done.stderr + done.stdout)[-1000:]})
                continue
            read = nlu_read_back(root, next(out.glob("*.tar.gz")), project.train_args)
            runs.append({"wall_s": round(wall, 1), "intent_accuracy": read["intent_accuracy"],
                         "intent_wrong": read["intent_wrong"]})
        accuracies = [r["intent_accuracy"] for r in runs if r.get("intent_accuracy") is not None]
        return {"project": project.name, "trainings": times, "runs": runs,
                "all_right": sum(1 for a in accuracies if a == 1.0),
                "at_least_99": sum(1 for a in accuracies if a >= 0.99),
                "lowest": min(accuracies, default=None)}
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--projects", nargs="+", choices=sorted(BY_NAME), help="default: all")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--keep-models", type=Path, help="copy each trained archive here")
    parser.add_argument("--list", action="store_true", help="list the projects and exit")
    parser.add_argument("--nlu-repeat", type=int, metavar="N",
                        help="only train each project's NLU N times (own random seeds) and read its training "
                             "examples back each time; prints JSON (with --out, writes it there)")
    args = parser.parse_args(argv)
    if args.list:
        for p in PROJECTS:
            print(p.name, p.path)
        return 0
    if not PROJECTS_DIR.is_dir():
        parser.error(f"{PROJECTS_DIR} not found: the benchmark reads the projects from ../shared/benchmarks.")
    from bot.version import __version__

    if args.nlu_repeat:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, text=True,
                                capture_output=True).stdout.strip()
        found = {"benchmark": "benchmarks/rasa_projects.py --nlu-repeat", "commit": commit,
                 "measured_at": time.strftime("%Y-%m-%d %H:%M:%S"),
                 "projects": [nlu_repeats(BY_NAME[name], args.nlu_repeat)
                              for name in args.projects or [p.name for p in PROJECTS]]}
        text = json.dumps(found, indent=1, ensure_ascii=False)
        if args.out != RESULTS:
            args.out.write_text(text + "\n", encoding="utf-8")
        print(text)
        return 0
    previous: dict[str, Any] = {}
    if args.out.exists():
        previous = json.loads(args.out.read_text(encoding="utf-8"))
    entries = {e["project"]: e for e in previous.get("projects", [])}
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, text=True,
                            capture_output=True).stdout.strip()
    for name in args.projects or [p.name for p in PROJECTS]:
        print(f"== {name}", flush=True)
        try:
            result = run_project(BY_NAME[name], args.keep_models)
        except Exception as e:  # one project's failure is recorded; the others still run
            result = {"project": name, "error": f"{type(e).__name__}: {e}"}
        result.update({"kefu_version": __version__, "commit": commit, "measured_at": time.strftime("%Y-%m-%d %H:%M:%S"),
                       "cpus": len(os.sched_getaffinity(0))})
        entries[name] = result
        summary = {k: result.get(k) for k in ("train", "stories")}
        nlu = result.get("nlu") or {}
        summary["nlu"] = {k: nlu.get(k) for k in ("examples", "intent_accuracy", "retrieval_examples",
                                                   "response_selector_accuracy")}
        print(json.dumps(summary, ensure_ascii=False, default=str), flush=True)
        order = [p.name for p in PROJECTS]
        out = {
            "benchmark": "benchmarks/rasa_projects.py",
            "rasa_figures": "../shared/benchmarks/rasa_projects/README.md: Rasa 3.6.21 cannot be installed "
                            "here (Python 3.11), so Rasa was not rerun; example bots have no Rasa figures",
            "projects": sorted(entries.values(), key=lambda e: order.index(e["project"])
                               if e["project"] in order else len(order)),
        }
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(out, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
