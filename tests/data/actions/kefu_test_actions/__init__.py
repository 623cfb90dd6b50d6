"""Tiny rasa_sdk action package for kefu's action tests."""
