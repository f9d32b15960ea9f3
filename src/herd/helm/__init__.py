"""The only place helm runs: client, dialect, failures, source files, chart CRDs, sandbox.

The sandbox (`worker`) parses tenant chart bytes in child processes with time and memory
limits; `workdir` owns the process's files (kubeconfigs, helm home, chart cache).
"""
