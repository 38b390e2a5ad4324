"""The OpenAI-compatible HTTP API (Quart only: this package never imports Qt)."""
