"""Stand-ins for s3prl's ``downstream/ctc/corpus/`` readers, which the PyPI s3prl lacks (the folder has no
``__init__.py``, so packaging drops it): ``libriphone`` (PR) and ``snips`` (SF).

``superb.launch`` installs this package as ``s3prl.downstream.ctc.corpus`` only when no such module is found
(an s3prl checkout given with ``S3PRL_DIR`` wins). The readers follow the checkout's datasets: the same files,
labels, order (longest label first, stable) and buckets, so the stock ctc expert trains on the same batches.
"""
