"""Audio at the edges: frames, files, microphone and speaker, simulated sources and sinks.

Everything inside the pipeline is 16 kHz mono float32 (``AudioFrame``); bytes,
sample formats and device rates exist only here.
"""
