import sys; sys.path.insert(0, 'benchmarks/fast_path_scratch'); sys.path.insert(0, '.')
import jax, jax.numpy as jnp
import stab_count as S
from sdrift_jax import costs
for n, d in [(1024, 2), (4096, 2), (4096, 64), (1024, 512)]:
  kx, ky = jax.random.split(jax.random.key(n * 1000 + d))
  x = jax.random.normal(kx, (n, d)); y = jax.random.normal(ky, (n, d)) + 0.5
  tau = 0.05 * d
  for yy in (y, x):
    L = -costs.pairwise_cost(x, yy) / tau
    la = jnp.full((n,), -jnp.log(n))
    S.COUNT.clear()
    jax.block_until_ready(S.row_normalized_coupling(L, la, la, 41))
    print(n, d, len(S.COUNT), "builds (incl. initial)")
