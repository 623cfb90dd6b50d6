"""Training-data tools of ``python -m bot data``: ``split nlu`` and ``convert`` (Rasa's ``rasa data ...``)."""
