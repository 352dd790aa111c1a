"""companion's stages over the Wyoming protocol (Home Assistant's voice protocol).

- ``server``: ``companion wyoming``, a Wyoming server exposing the robot's own stages: ``asr``
  (faster-whisper with the transcript guard), ``tts`` (piper, streaming by sentence) and ``handle``
  (the child-safe brain: input safety, memory, persona, model, output guard).
- ``info``: what the server says it has (``describe`` -> ``info``), from the prepared models.
- ``remote``: the robot's loop using a family server's stage, falling back to its own.
"""
