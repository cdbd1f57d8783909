"""Specs: the JSON-round-tripping dataclasses every entry goes through, their one validator and limits."""
