"""Tater Desktop: a tray app that serves a local OpenAI-compatible chat API."""

__version__ = "0.1.0"
APP_NAME = "Tater Desktop"
APP_ID = "tater-desktop"
