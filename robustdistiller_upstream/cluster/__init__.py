"""Beyond one machine: job descriptions shared by the local and the SLURM launchers (``jobs``), submitit executors
and the sbatch script (``slurm``), the job state a ``robustdistiller jobs DIR`` table shows (``state``) and locks
on a shared filesystem (``locks``)."""
