"""companion: an on-device voice companion for children.

The pipeline reads top to bottom in the package folders:
``models`` (offline provisioning) -> ``llm`` (the ONNX language model) -> ``chat``.
"""

__version__ = "0.1.0"
