"""Compiled forms of a model, what the fast serving path runs: ONNX graphs built by
onnxruntime-genai's model builder (float32, int8, int4 with GPTQ), one quantized copy per set of
base weights cached under ``TUNERY_HOME/compiled``, LoRA fine-tunes converted to ONNX Runtime
adapter files over it, and the quality measurement that chose the precision."""
