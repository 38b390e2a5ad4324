"""The settings window's pages, one module each."""
