import sys; sys.path.insert(0, '.'); sys.path.insert(0, '/tmp/sdrift_old_pkg')
import jax, jax.numpy as jnp
from sdrift_jax import drift_field
from sdrift_old import drift_field as old_field
n, d, T = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
x = jnp.ones((n, d)); y = jnp.ones((n, d)); tau = 0.05 * d
for nm, fn in (("new", drift_field), ("old", old_field)):
  txt = jax.jit(lambda x, y: fn(x, y, x, tau, T=T, check_finite=False)).lower(x, y).compile().as_text()
  open(f"/tmp/{nm}.hlo", "w").write(txt)
  import re
  ents = [l.strip()[:200] for l in txt.splitlines() if ("ENTRY" in l) ]
  print(nm, len(txt.splitlines()))
