"""Helpers for testing with critic: tiny models, a vLLM server launcher."""
