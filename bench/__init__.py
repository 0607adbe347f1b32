"""The compression bench: one teacher, many compressed candidates, measured alike.

Importing this package must stay cheap: no torch, onnxruntime or openvino here.
"""

__version__ = "0.1.0"
