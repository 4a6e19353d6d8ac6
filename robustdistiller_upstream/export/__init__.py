"""Deployment exports of our upstreams: ONNX (fp32, int8) for ONNX Runtime, and Hugging Face ``HubertModel``.

- ``source``: a student or pruned checkpoint -> one traceable module with the upstream's hidden states;
- ``check``: the ragged check batch and the comparisons (max difference, cosine) over valid frames;
- ``outputs``: where an export may write (refuses to overwrite unless forced);
- ``onnx``: the ONNX graph and its ONNX Runtime self-check; ``quantize``: int8 (dynamic, static);
- ``hf``: ``config.json`` + ``model.safetensors`` for transformers; ``card``: its model card.

Heavy imports (onnx, onnxruntime, transformers) happen inside the functions that need them.
"""
