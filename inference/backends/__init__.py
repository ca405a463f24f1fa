"""Backends turn ChatRequests into Responses: openai, batch-file, transformers, reference."""
