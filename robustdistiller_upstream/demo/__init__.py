"""The CPU demo (``robustdistiller demo``): its spoken corpora, pretraining runs and downstream evaluation; and the
SUPERB-layout corpora of the end-to-end tests and benches (``superb_corpora``)."""
