"""Pretraining: corpus reading (``data``), the training loop (``runner``) and its config (``config``)."""
