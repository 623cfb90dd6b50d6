"""Custom actions of the demo sports shop (rasa_sdk).

Runs unchanged under Rasa's action server (`rasa run actions`), kefu's
`python -m bot actions` and kefu's in-process executor. Nothing here imports
`bot`: the package only depends on rasa_sdk and the standard library.
"""
