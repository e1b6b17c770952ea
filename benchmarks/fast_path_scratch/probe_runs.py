"""How many of calls 9-24 still fault with reuse_freed_memory, over several fresh
processes (the probe of tests/test_host_memory.py), and by default once.
Usage: python benchmarks/fast_path_scratch/probe_runs.py RUNS
"""
import sys
sys.path.insert(0, 'tests')
import test_host_memory as t

runs = int(sys.argv[1])
counts = [sum(f > 8000 for f in t._probe("reuse")["faults"][8:]) for _ in range(runs)]
print("reuse: faulting calls among 9-24 per run", counts,
      "default:", sum(f > 8000 for f in t._probe("default")["faults"][8:]))
