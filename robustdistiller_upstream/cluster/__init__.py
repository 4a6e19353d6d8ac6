"""Beyond one machine: job descriptions shared by the local and the SLURM launchers (``jobs``), submitit executors
and the sbatch script (``slurm``), and the job state a ``robustdistiller jobs DIR`` table shows (``state``). (Locks on
a shared filesystem are a general helper: ``robustdistiller_upstream/locks.py``.)"""
