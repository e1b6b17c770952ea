"""``run(config, workdir)``: the experiment named by ``config.experiment``."""
from __future__ import annotations

EXPERIMENTS = ("particles", "toy", "mnist", "latents")


def run(config, workdir: str):
  """Runs the experiment of ``config`` in ``workdir`` and returns its summary.

  The run holds ``workdir``'s lock (:func:`sdrift_jax.workdir.hold`, process 0 only: the
  processes of one multi-host job share the workdir) from start to end, so a second run
  into it, or into the top directory of a sweep in progress, is refused at once.

  Raises:
    sdrift_jax.workdir.WorkdirBusyError: another run holds ``workdir``.
  """
  import jax  # pylint: disable=g-import-not-at-top
  from sdrift_jax import workdir as workdir_lib  # pylint: disable=g-import-not-at-top
  with workdir_lib.hold(workdir, enabled=jax.process_index() == 0):
    return _run(config, workdir)


def _run(config, workdir: str):
  kind = config.get("experiment")
  if kind == "particles":
    from sdrift_jax import particles
    return particles.run_particles(config, workdir)
  if kind == "toy":
    from sdrift_jax import toy
    if config.sweep.enabled:
      return toy.run_sweep(config, workdir)
    return toy.run_toy(config, workdir)
  if kind == "mnist":
    from sdrift_jax import mnist
    return mnist.run_mnist(config, workdir)
  if kind == "latents":
    from sdrift_jax import latents
    return latents.run_latents(config, workdir)
  raise ValueError(f"unknown config.experiment {kind!r}: expected one of {EXPERIMENTS}")
