"""Speech recognition: faster-whisper on the utterance audio, with the hallucination guard."""
