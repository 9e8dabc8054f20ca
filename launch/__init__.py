"""Launchers of multi-process jobs: SLURM, TPU VM pods, Kubernetes, and N local processes."""
