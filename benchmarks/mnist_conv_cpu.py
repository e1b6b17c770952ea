"""Times the MNIST autoencoder's layers and training step on the CPU, inside and outside
``lax.scan`` (why ``experiments.mnist_models.fit`` loops in Python and the decoder uses sub-pixel upsampling).

    python -m benchmarks.mnist_conv_cpu
"""
import jax
import jax.numpy as jnp
from flax import nnx

from benchmarks.common import machine_description, time_call
from experiments import mnist_models
from sdrift_jax.models import layers


def grad_time(module, inp, post=lambda h: h):
  g, p = nnx.split(module)
  f = jax.jit(jax.grad(lambda p, x: jnp.sum(post(nnx.merge(g, p)(x)) ** 2), argnums=(0, 1)))
  return 1e3 * time_call(f, p, inp, repeats=3)


def main():
  r = nnx.Rngs(0)
  B = 256
  conv = dict(kernel_size=(3, 3), strides=(2, 2), padding="SAME", rngs=r)
  rows = [
      ("nnx.Conv 32->64, stride 2, 14x14 input",
       grad_time(nnx.Conv(32, 64, **conv), jnp.ones((B, 14, 14, 32)))),
      ("nnx.ConvTranspose 64->32, stride 2, 7x7 input",
       grad_time(nnx.ConvTranspose(64, 32, **conv), jnp.ones((B, 7, 7, 64)))),
      ("SubPixelUpsample 64->32, 7x7 input",
       grad_time(layers.SubPixelUpsample(64, 32, rngs=r), jnp.ones((B, 7, 7, 64)))),
  ]
  ae = mnist_models.ConvAutoencoder(6, rngs=r)
  g, p = nnx.split(ae)
  loss = lambda p, x: mnist_models.ae_loss(nnx.merge(g, p), x, None)
  x = jnp.full((B, 28, 28, 1), 0.5)
  rows.append(("autoencoder, one jitted step", 1e3 * time_call(
      jax.jit(jax.value_and_grad(loss)), p, x, repeats=3)))

  def scanned(p, xs):
    def body(p, x):
      l, gr = jax.value_and_grad(loss)(p, x)
      return jax.tree.map(lambda a, b: a - 1e-3 * b, p, gr), l
    return jax.lax.scan(body, p, xs)
  steps = 3
  t = time_call(jax.jit(scanned), p, jnp.stack([x] * steps), repeats=2)
  rows.append(("autoencoder, same step inside lax.scan (per step)", 1e3 * t / steps))
  print(f"Machine: {machine_description()}\n")
  print("| what (batch 256, forward + backward) | ms |\n|---|---:|")
  for name, ms in rows:
    print(f"| {name} | {ms:.0f} |")


if __name__ == "__main__":
  main()
