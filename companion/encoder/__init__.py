"""The sentence encoder: one small model (all-MiniLM-L6-v2, int8 ONNX) that turns a sentence into a
vector, shared by knowledge retrieval, memory recall and the safety classifier.

``export.py`` runs at prepare time only (optimum + torch); ``runtime.py`` is torch-free.
"""
