"""Voice activity detection (Silero VAD v6, streaming) and endpointing (when a child starts and stops)."""
