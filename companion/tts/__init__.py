"""Text to speech: speakable text, clause-by-clause splitting of the token stream, piper synthesis."""
