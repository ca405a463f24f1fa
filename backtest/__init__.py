"""Execution simulation vectorised across runs, and baselines (DESIGN §8)."""
