__version__ = "0.1.0"
# Rasa version whose formats and HTTP API kefu speaks (reported in /version like Rasa).
RASA_COMPAT_VERSION = "3.6.21"
