"""FAQ knowledge base: entries, hybrid FAISS + char-n-gram retrieval, hot reload, CRUD."""
from __future__ import annotations

from bot.knowledge.base import ANSWER, CLARIFY, NO_ANSWER, Candidate, KBResult, KnowledgeBase, KnowledgeIndexError
from bot.knowledge.config import KnowledgeConfig
from bot.knowledge.entries import Answer, Button, Entry

__all__ = ["ANSWER", "CLARIFY", "NO_ANSWER", "Answer", "Button", "Candidate", "Entry", "KBResult",
           "KnowledgeBase", "KnowledgeConfig", "KnowledgeIndexError"]
