"""Saga definitions: pure state machines."""
