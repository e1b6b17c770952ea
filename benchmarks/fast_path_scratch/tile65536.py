"""benchmarks.blocked_memory with blocked.TILE_ENTRIES set first: the tile size's effect at
large N (glibc serves blocks under 32 MiB from its heap; larger ones are fresh mmaps whose
pages fault in on every call).
Usage: python benchmarks/fast_path_scratch/tile65536.py LOG2_TILE_ENTRIES N [more
blocked_memory arguments, e.g. --once: time the first call, compilation included]
"""
import sys
sys.path.insert(0, '.')
from sdrift_jax import blocked
blocked.TILE_ENTRIES = 1 << int(sys.argv[1])
from benchmarks import blocked_memory
blocked_memory.main(["--n", sys.argv[2], "--d", "64", "--T", "3", "--algorithm", "blocked"]
                    + sys.argv[3:])
