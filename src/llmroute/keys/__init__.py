"""API keys: which one to use next, and where that choice is remembered."""
