"""The CPU demo (``robustdistiller demo``): its spoken corpora, pretraining runs and downstream evaluation."""
