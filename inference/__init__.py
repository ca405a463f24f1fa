"""Prompts, modes, canonical requests, backends, cache, parsing and guardrails (DESIGN §7)."""
