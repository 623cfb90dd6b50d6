"""``python -m bot data suggest``: cross-validate the project's pipeline and kefu's recommended one
(``bot/nlu/suggest.py``) on the same folds of the project's data; print the table and a recommendation."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from bot.nlu.suggest import recommendation, recommended_pipeline


def run_suggest(args: argparse.Namespace) -> int:
    from bot.model.training import _project_importers
    from bot.shared.yaml_io import to_plain
    from bot.testing.nlu import comparison_table, cross_validate_timed

    root = Path(args.root)
    importer, nlu_importer = _project_importers(root, args.config, None, args.data, args.nlu, None, nlu_only=True)
    project_config = importer.get_config()
    data = nlu_importer.get_nlu_data()
    own_label = f"yours ({Path(project_config.filename or 'config.yml').name})"
    label, recommended = recommended_pipeline(project_config, data)
    print(f"Cross-validating 2 pipelines on {len(data.training_examples)} examples, "
          f"{len(data.intents)} intents, {args.folds} folds (same folds for both) ...", flush=True)

    def progress(line: str) -> None:
        print("  " + line, flush=True)

    results = []
    for name, config in ((own_label, project_config), (label, recommended)):
        results.append(cross_validate_timed(name, config, data, int(args.folds), 1, root_dir=root,
                                            seed=int(args.random_seed), progress=progress))
    print()
    print(comparison_table(results))
    line = recommendation(results[0].figures, results[1].figures, label)
    print(line)
    print("The recommended pipeline (config.yml `pipeline:`):")
    print(json.dumps(to_plain(recommended["pipeline"]), ensure_ascii=False))
    if args.out:
        payload = {
            "folds": int(args.folds),
            "random_seed": int(args.random_seed),
            "num_examples": len(data.training_examples),
            "num_intents": len(data.intents),
            "pipelines": {
                cv.label: {**cv.figures, "train_seconds": cv.train_seconds} for cv in results
            },
            "recommended_pipeline": to_plain(recommended["pipeline"]),
            "recommendation": line,
        }
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(payload, ensure_ascii=False, indent=2), encoding="utf-8")
        print(f"Figures written to {args.out}")
    return 0
