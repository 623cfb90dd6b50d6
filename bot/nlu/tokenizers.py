"""Tokenizers: Rasa's WhitespaceTokenizer, JiebaTokenizer and SpacyTokenizer."""
from __future__ import annotations

import logging
import re
import shutil
from pathlib import Path
from typing import Any

from bot.nlu.base import TOKENS, Component, PipelineContext, Token
from bot.shared.exceptions import ConfigError
from bot.shared.training_data.nlu import Message, TrainingData

logger = logging.getLogger(__name__)

TOKENIZER_DEFAULTS: dict[str, Any] = {
    "intent_tokenization_flag": False,
    "intent_split_symbol": "_",
    "token_pattern": None,
    "prefix_separator_symbol": None,
}

# Rasa's WhitespaceTokenizer cleaning rules (rasa/nlu/tokenizers/whitespace_tokenizer.py)
_WHITESPACE_CLEAN = re.compile(
    r"[^\w#@&]+(?=\s|$)|"
    r"(\s|^)[^\w#@&]+(?=[^0-9\s])|"
    r"(?<=[^0-9\s])[^\w._~:/?#\[\]()@!$&*+,;=-]+(?=[^0-9\s])"
)


class Tokenizer(Component):
    """Adds ``tokens`` to every message; subclasses implement ``tokenize``."""

    defaults = TOKENIZER_DEFAULTS
    ignored_options = frozenset({"intent_tokenization_flag", "intent_split_symbol", "prefix_separator_symbol"})
    ignored_option_notes = {"intent_tokenization_flag": "a multi-intent label (greet+inform) is learned as one intent"}

    def tokenize(self, text: str) -> list[Token]:  # pragma: no cover - abstract
        raise NotImplementedError

    def _apply_token_pattern(self, tokens: list[Token]) -> list[Token]:
        pattern = self.config.get("token_pattern")
        if not pattern:
            return tokens
        regex = re.compile(pattern)
        out: list[Token] = []
        for token in tokens:
            for m in regex.finditer(token.text):
                if m.group(0):
                    out.append(Token(m.group(0), token.start + m.start(), token.start + m.end()))
        return out

    def train(self, training_data: TrainingData, messages: list[Message]) -> None:
        for m in messages:
            self.process(m)
            if m.entities:
                warn_misaligned_entities(m, m.get(TOKENS) or [], self.name)

    def process(self, message: Message) -> None:
        message.set(TOKENS, self._apply_token_pattern(self.tokenize(message.text)))


def warn_misaligned_entities(message: Message, tokens: list[Token], tokenizer: str) -> None:
    """Warn (file:line) when an annotation starts or ends inside a token (Rasa warns too).

    Such an entity cannot be learned as annotated: the tagger sees whole tokens.
    """
    from bot.shared.training_data.nlu import warn_training_data

    starts = {t.start for t in tokens}
    ends = {t.end for t in tokens}
    for e in message.entities:
        if e["start"] in starts and e["end"] in ends:
            continue
        span = message.text[e["start"] : e["end"]]
        covering = [t.text for t in tokens if t.start < e["end"] and t.end > e["start"]]
        warn_training_data(
            f"Entity annotation '{span}' ({e['entity']}) in example '{message.text}' does not match "
            f"the {tokenizer} tokens {covering}. Annotate whole tokens"
            + (", or add the word to the jieba dictionary (dictionary_path)." if tokenizer == "JiebaTokenizer"
               else "."),
            message.source,
            message.line,
        )


def words_to_tokens(words: list[str], text: str) -> list[Token]:
    """Find each word in ``text`` left to right to get its offsets."""
    tokens: list[Token] = []
    offset = 0
    for word in words:
        start = text.find(word, offset)
        if start < 0:
            start = offset
        end = start + len(word)
        tokens.append(Token(word, start, end))
        offset = end
    return tokens


class WhitespaceTokenizer(Tokenizer):
    name = "WhitespaceTokenizer"

    def tokenize(self, text: str) -> list[Token]:
        words = _WHITESPACE_CLEAN.sub(" ", text).split()
        if not words and text.strip():
            # only punctuation / emoji: keep the whole text as one token, as Rasa does
            words = [text.strip()]
        return words_to_tokens(words, text)


class JiebaTokenizer(Tokenizer):
    """Chinese word segmentation with jieba (optionally a user dictionary folder)."""

    name = "JiebaTokenizer"
    defaults = {**TOKENIZER_DEFAULTS, "dictionary_path": None}

    def __init__(self, config: dict[str, Any], context: PipelineContext) -> None:
        super().__init__(config, context)
        self._jieba: Any = None
        self._dictionary_files: list[Path] = []

    def _dictionary_dir(self) -> Path | None:
        raw = self.config.get("dictionary_path")
        if not raw:
            return None
        path = Path(raw)
        if not path.is_absolute() and self.context.root_dir is not None:
            path = Path(self.context.root_dir) / path
        if not path.exists():
            raise ConfigError(
                f"JiebaTokenizer dictionary_path '{raw}' does not exist.",
                self.context.config_file,
                fix="Point dictionary_path at a folder of jieba user dictionaries "
                "(relative to the project root) or remove it.",
            )
        return path

    def _tokenizer(self) -> Any:
        if self._jieba is None:
            import jieba

            jieba.setLogLevel(logging.WARNING)
            folder = self._dictionary_dir()
            if folder is not None and not self._dictionary_files:
                self._dictionary_files = sorted(
                    f for f in ([folder] if folder.is_file() else folder.iterdir()) if f.is_file()
                )
            for f in self._dictionary_files:
                jieba.load_userdict(str(f))
            self._jieba = jieba
        return self._jieba

    def tokenize(self, text: str) -> list[Token]:
        jieba = self._tokenizer()
        return [Token(w, s, e) for w, s, e in jieba.tokenize(text) if w.strip()]

    def persist(self, path: Path) -> None:
        self._tokenizer()
        for i, f in enumerate(self._dictionary_files):
            shutil.copy(f, path / f"{i:03d}_{f.name}")

    @classmethod
    def load(cls, config: dict[str, Any], context: PipelineContext, path: Path) -> "JiebaTokenizer":
        component = cls({**config, "dictionary_path": None}, context)
        component._dictionary_files = sorted(f for f in path.iterdir() if f.is_file())
        component.config["dictionary_path"] = config.get("dictionary_path")
        return component


_SPACY_CACHE: dict[str, Any] = {}


def spacy_nlp(model: str | None, language: str) -> Any:
    """spaCy pipeline by model name, or a blank one for the language (offline)."""
    import spacy

    key = f"{model}|{language}"
    if key not in _SPACY_CACHE:
        nlp = None
        if model:
            try:
                nlp = spacy.load(model)
            except OSError:
                logger.warning(
                    "spaCy model '%s' is not installed; using spacy.blank('%s') "
                    "(tokens only, no vectors).", model, language,
                )
        if nlp is None:
            nlp = spacy.blank(language)
        _SPACY_CACHE[key] = nlp
    return _SPACY_CACHE[key]


class SpacyNLP(Component):
    """Loads the spaCy pipeline SpacyTokenizer uses (blank when none is installed)."""

    name = "SpacyNLP"
    defaults = {"model": None, "case_sensitive": False}
    ignored_options = frozenset({"case_sensitive"})

    def process(self, message: Message) -> None:
        pass


class SpacyTokenizer(Tokenizer):
    name = "SpacyTokenizer"

    def tokenize(self, text: str) -> list[Token]:
        model = self.context.extras.get("spacy_model")
        nlp = spacy_nlp(model, self.context.language or "en")
        doc = nlp.make_doc(text)
        return [
            Token(t.text, t.idx, t.idx + len(t.text), t.lemma_ or None)
            for t in doc
            if t.text.strip()
        ]
