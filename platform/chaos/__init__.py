"""Chaos experiments as commands: faults on a local dev stack and the seeded monkey."""
