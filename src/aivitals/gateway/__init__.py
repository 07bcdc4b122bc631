"""The OpenAI-compatible gateway: point a client's base URL at aivitals and every call is recorded."""
