"""lutfuse-deploy: infrared-visible fusion models from checkpoint to per-device engine.

Data flows one way: checkpoint -> model -> graph -> engine -> runtime -> profile.
Heavy libraries (onnx, onnxruntime, tensorrt) are imported lazily inside the functions using them.
"""

__version__ = "0.1.0"

MODEL_KINDS = ("lutfuse", "mmdrfuse-student", "mmdrfuse-teacher")
