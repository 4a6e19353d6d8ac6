"""The SUPERB sweep under clean, noisy and reverberant test conditions (``run_superb.sh``, ``robustdistiller
report``): task table, our downstream configs, condition copies, the stock-runner driver and the report."""
