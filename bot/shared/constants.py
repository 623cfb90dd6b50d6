"""Names shared by every layer, spelled exactly as Rasa 3.6 spells them.

Rasa projects, stored trackers and the rasa_sdk protocol all carry these
strings, so they are part of the compatibility contract: never rename them.
Sources: ``rasa/shared/constants.py``, ``rasa/shared/core/constants.py`` and
``rasa/shared/nlu/constants.py``.
"""
from __future__ import annotations

DEFAULT_SENDER_ID = "default"
UTTER_PREFIX = "utter_"
DOCS_URL = "https://rasa.com/docs/rasa"

# --- default intents -------------------------------------------------------
USER_INTENT_RESTART = "restart"
USER_INTENT_BACK = "back"
USER_INTENT_OUT_OF_SCOPE = "out_of_scope"
USER_INTENT_SESSION_START = "session_start"
DEFAULT_NLU_FALLBACK_INTENT_NAME = "nlu_fallback"

DEFAULT_INTENTS = [
    USER_INTENT_RESTART,
    USER_INTENT_BACK,
    USER_INTENT_OUT_OF_SCOPE,
    USER_INTENT_SESSION_START,
    DEFAULT_NLU_FALLBACK_INTENT_NAME,
]

# --- default actions (Rasa's order matters: it fixes action indices) --------
ACTION_LISTEN_NAME = "action_listen"
ACTION_RESTART_NAME = "action_restart"
ACTION_SESSION_START_NAME = "action_session_start"
ACTION_DEFAULT_FALLBACK_NAME = "action_default_fallback"
ACTION_DEACTIVATE_LOOP_NAME = "action_deactivate_loop"
ACTION_REVERT_FALLBACK_EVENTS_NAME = "action_revert_fallback_events"
ACTION_DEFAULT_ASK_AFFIRMATION_NAME = "action_default_ask_affirmation"
ACTION_DEFAULT_ASK_REPHRASE_NAME = "action_default_ask_rephrase"
ACTION_TWO_STAGE_FALLBACK_NAME = "action_two_stage_fallback"
ACTION_UNLIKELY_INTENT_NAME = "action_unlikely_intent"
ACTION_BACK_NAME = "action_back"
ACTION_SEND_TEXT_NAME = "action_send_text"
# Marks "any number of steps may come before" in rules (`- action: ...`).
RULE_SNIPPET_ACTION_NAME = "..."
ACTION_EXTRACT_SLOTS = "action_extract_slots"
ACTION_VALIDATE_SLOT_MAPPINGS = "action_validate_slot_mappings"

DEFAULT_ACTION_NAMES = [
    ACTION_LISTEN_NAME,
    ACTION_RESTART_NAME,
    ACTION_SESSION_START_NAME,
    ACTION_DEFAULT_FALLBACK_NAME,
    ACTION_DEACTIVATE_LOOP_NAME,
    ACTION_REVERT_FALLBACK_EVENTS_NAME,
    ACTION_DEFAULT_ASK_AFFIRMATION_NAME,
    ACTION_DEFAULT_ASK_REPHRASE_NAME,
    ACTION_TWO_STAGE_FALLBACK_NAME,
    ACTION_UNLIKELY_INTENT_NAME,
    ACTION_BACK_NAME,
    ACTION_SEND_TEXT_NAME,
    RULE_SNIPPET_ACTION_NAME,
    ACTION_EXTRACT_SLOTS,
]

DEFAULT_KNOWLEDGE_BASE_ACTION = "action_query_knowledge_base"

# --- default slots -----------------------------------------------------------
REQUESTED_SLOT = "requested_slot"
SESSION_START_METADATA_SLOT = "session_started_metadata"
DEFAULT_SLOT_NAMES = {REQUESTED_SLOT, SESSION_START_METADATA_SLOT}
DEFAULT_CATEGORICAL_SLOT_VALUE = "__other__"
SLOT_MAPPINGS = "mappings"
MAPPING_CONDITIONS = "conditions"
MAPPING_TYPE = "type"

# --- loops (forms) -----------------------------------------------------------
LOOP_NAME = "name"
LOOP_INTERRUPTED = "is_interrupted"
LOOP_REJECTED = "rejected"
TRIGGER_MESSAGE = "trigger_message"
FOLLOWUP_ACTION = "followup_action"

# Rules may say a slot / loop must be unset (`null`); the story generator
# replaces the `None` with this marker so RulePolicy can tell "unset" apart.
SHOULD_NOT_BE_SET = "should_not_be_set"

# --- state keys (the dict a tracker turn is featurised from) ----------------
USER = "user"
BOT = "bot"
PREVIOUS_ACTION = "prev_action"
ACTIVE_LOOP = "active_loop"
SLOTS = "slots"

# --- rule-only data (RulePolicy -> domain.states_for_tracker_history) --------
RULE_ONLY_SLOTS = "rule_only_slots"
RULE_ONLY_LOOPS = "rule_only_loops"

# --- message / parse-data keys (rasa/shared/nlu/constants.py) ---------------
TEXT = "text"
INTENT = "intent"
ENTITIES = "entities"
ACTION_NAME = "action_name"
ACTION_TEXT = "action_text"
INTENT_NAME_KEY = "name"
PREDICTED_CONFIDENCE_KEY = "confidence"
INTENT_RANKING_KEY = "intent_ranking"
FULL_RETRIEVAL_INTENT_NAME_KEY = "full_retrieval_intent_name"
RESPONSE_IDENTIFIER_DELIMITER = "/"
MESSAGE_ID = "message_id"
METADATA = "metadata"
ENTITY_ATTRIBUTE_TYPE = "entity"
ENTITY_ATTRIBUTE_VALUE = "value"
ENTITY_ATTRIBUTE_START = "start"
ENTITY_ATTRIBUTE_END = "end"
ENTITY_ATTRIBUTE_TEXT = "text"
ENTITY_ATTRIBUTE_ROLE = "role"
ENTITY_ATTRIBUTE_GROUP = "group"
ENTITY_ATTRIBUTE_CONFIDENCE = "confidence"
EXTRACTOR = "extractor"
# Separates entity type from role / group in featurised states: "city#from".
ENTITY_LABEL_SEPARATOR = "#"
USE_TEXT_FOR_FEATURIZATION = "use_text_for_featurization"

# kefu additions to Rasa's parse result (see DESIGN.md "Parse result").
SENTIMENT = "sentiment"
LANGUAGE = "language"

# --- external / triggered messages -------------------------------------------
EXTERNAL_MESSAGE_PREFIX = "EXTERNAL: "
IS_EXTERNAL = "is_external"
ACTION_NAME_SENDER_ID_CONNECTOR_STR = "__sender_id:"

# --- event metadata keys -----------------------------------------------------
METADATA_MODEL_ID = "model_id"
ASSISTANT_ID_KEY = "assistant_id"

# --- policy names Rasa's ensemble treats specially --------------------------
POLICY_NAME_RULE = "RulePolicy"
POLICY_NAME_MEMOIZATION = "MemoizationPolicy"
POLICY_NAME_TED = "TEDPolicy"
CLASSIFIER_NAME_FALLBACK = "FallbackClassifier"
POLICIES_THAT_EXTRACT_ENTITIES = {"TEDPolicy"}

# --- sessions ----------------------------------------------------------------
DEFAULT_SESSION_EXPIRATION_TIME_IN_MINUTES = 60
DEFAULT_CARRY_OVER_SLOTS_TO_NEW_SESSION = True
