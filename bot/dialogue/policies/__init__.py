"""Dialogue policies: the one table that maps config.yml names to classes.

Rasa's names are accepted as they are; a dotted path (``my_pkg.policies.MyPolicy``)
loads a user policy, which subclasses :class:`Policy` or Rasa's own
``rasa.core.policies.policy.Policy`` (run through ``bot/dialogue/rasa_compat``).
"""
from __future__ import annotations

import logging
from typing import Any, Optional

from bot.dialogue.policies.ensemble import PolicyEnsemble
from bot.dialogue.policies.memoization import AugmentedMemoizationPolicy, MemoizationPolicy
from bot.dialogue.policies.policy import Policy, PolicyPrediction, SupportedData, import_class
from bot.dialogue.policies.rule_policy import InvalidRule, RulePolicy
from bot.dialogue.policies.ted import TEDPolicy
from bot.shared.exceptions import ConfigError, UnknownComponentError

logger = logging.getLogger(__name__)

POLICIES: dict[str, Optional[type[Policy]]] = {
    "RulePolicy": RulePolicy,
    "MemoizationPolicy": MemoizationPolicy,
    "AugmentedMemoizationPolicy": AugmentedMemoizationPolicy,
    "TEDPolicy": TEDPolicy,
    # accepted so Rasa's default config loads; kefu does not implement it
    "UnexpecTEDIntentPolicy": None,
}

# Rasa 2 policies removed in Rasa 3, with what replaces them.
_REMOVED_POLICIES = {
    "FallbackPolicy": "RulePolicy with 'core_fallback_threshold' (and a FallbackClassifier in the pipeline)",
    "TwoStageFallbackPolicy": "RulePolicy plus a rule that runs action_two_stage_fallback on nlu_fallback",
    "MappingPolicy": "RulePolicy with rules for your intent -> action mappings",
    "FormPolicy": "RulePolicy (forms are handled by it)",
    "SklearnPolicy": "TEDPolicy",
    "KerasPolicy": "TEDPolicy",
}


def policy_class_for_name(name: str, file: Optional[str] = None, line: Optional[int] = None) -> Optional[type[Policy]]:
    """The class for a config name; ``None`` for policies accepted but ignored."""
    if name in POLICIES:
        return POLICIES[name]
    if name in _REMOVED_POLICIES:
        raise UnknownComponentError(
            f"Policy '{name}' was removed in Rasa 3 and is not supported.",
            file,
            line,
            fix=f"Use {_REMOVED_POLICIES[name]}.",
        )
    if "." in name:
        from bot.dialogue.rasa_compat import install

        install()  # a class written against Rasa's API imports rasa.* (served by kefu when Rasa is absent)
        try:
            cls = import_class(name)
        except ImportError as e:
            raise UnknownComponentError(
                f"Cannot import policy '{name}': {e}",
                file,
                line,
                fix="Check the dotted path and that the module is importable (on PYTHONPATH).",
            ) from e
        from bot.dialogue.rasa_compat.adapter import RasaGraphPolicy, is_rasa_api_policy

        if is_rasa_api_policy(cls):
            return RasaGraphPolicy
        if not (isinstance(cls, type) and issubclass(cls, Policy)):
            raise UnknownComponentError(
                f"'{name}' is not a policy class.",
                file,
                line,
                fix="Subclass bot.dialogue.policies.Policy.",
            )
        return cls
    raise UnknownComponentError.for_name("policy", name, POLICIES.keys(), file, line)


def policy_from_config(
    entry: dict[str, Any], file: Optional[str] = None, index: Optional[int] = None, line: Optional[int] = None
) -> Optional[Policy]:
    """One ``policies:`` item -> a policy instance (``None`` if ignored)."""
    if not isinstance(entry, dict) or not entry.get("name"):
        where = f"policy #{index + 1}" if index is not None else "a policy"
        raise ConfigError(
            f"{where} in 'policies' has no 'name'.",
            file,
            line,
            fix="Write each policy as '- name: RulePolicy' followed by its options.",
        )
    name = str(entry["name"])
    cls = policy_class_for_name(name, file, line)
    if cls is None:
        logger.warning("Policy '%s' is not supported by kefu and is skipped.", name)
        return None
    options = {k: v for k, v in entry.items() if k != "name"}
    from bot.dialogue.rasa_compat.adapter import RASA_CLASS_KEY, RasaGraphPolicy

    if cls is RasaGraphPolicy:
        options[RASA_CLASS_KEY] = name
    return cls(options, filename=file, line=line)


__all__ = [
    "POLICIES",
    "AugmentedMemoizationPolicy",
    "InvalidRule",
    "MemoizationPolicy",
    "Policy",
    "PolicyEnsemble",
    "PolicyPrediction",
    "RulePolicy",
    "SupportedData",
    "TEDPolicy",
    "policy_class_for_name",
    "policy_from_config",
]
