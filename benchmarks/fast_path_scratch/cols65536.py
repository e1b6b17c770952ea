"""benchmarks.blocked_memory with blocked.MAX_TILE_COLS and SPLIT_COLS_ABOVE set first: tiles cut
along y (2D tiles) or not (a value >= N keeps whole rows).
Usage: python benchmarks/fast_path_scratch/cols65536.py LOG2_MAX_TILE_COLS N [more
blocked_memory arguments, e.g. --once]
"""
import sys
sys.path.insert(0, '.')
from benchmarks import blocked_memory
from sdrift_jax import blocked
blocked.MAX_TILE_COLS = blocked.SPLIT_COLS_ABOVE = 1 << int(sys.argv[1])
blocked_memory.main(["--n", sys.argv[2], "--d", "64", "--T", "3", "--algorithm", "blocked"]
                    + sys.argv[3:])
