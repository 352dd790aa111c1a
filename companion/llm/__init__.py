"""The language model: exported to ONNX once (``export``), run with onnxruntime only.

Run time needs onnxruntime, numpy, tokenizers and jinja2: no torch, no transformers.
``tokenizer`` renders the chat template and encodes; ``session`` opens the ONNX
model on the configured execution providers; ``sampling`` picks tokens;
``generate`` is the KV-cached generation loop with prefix caching and cancellation.
"""
