"""Figures (matplotlib, no display needed)."""
from __future__ import annotations

from typing import Sequence

import numpy as np


def _plt():
  try:
    import matplotlib
  except ImportError as e:  # pragma: no cover
    raise ImportError("figures need matplotlib: pip install 'sdrift_jax[experiments]'") from e
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  return plt


def particle_grid(trajectories, source, target, taus, methods, path, w2=None):
  """Rows: temperatures; columns: methods. ``trajectories[t][m]`` is ``[steps+1, N, 2]``."""
  plt = _plt()
  fig, axes = plt.subplots(len(taus), len(methods),
                           figsize=(2.8 * len(methods), 2.8 * len(taus)), squeeze=False)
  for i, tau in enumerate(taus):
    for j, m in enumerate(methods):
      ax = axes[i, j]
      traj = np.asarray(trajectories[i][j])
      for k in range(traj.shape[1]):
        ax.plot(traj[:, k, 0], traj[:, k, 1], lw=0.3, color="0.6", alpha=0.6)
      ax.scatter(*np.asarray(source).T, s=4, c="tab:blue", label="source")
      ax.scatter(*np.asarray(target).T, s=4, c="tab:red", label="target")
      ax.scatter(*traj[-1].T, s=5, c="k", label="current")
      title = f"{m}\ntau={tau:g}"
      if w2 is not None:
        title += f"  W2^2={w2[i][j]:.2f}"
      ax.set_title(title, fontsize=8)
      ax.set_xticks([])
      ax.set_yticks([])
      lim = max(6.0, float(np.nanmax(np.abs(traj[-1]))) + 0.5) if np.all(
          np.isfinite(traj[-1])) else 6.0
      ax.set_xlim(-lim, lim)
      ax.set_ylim(-lim, lim)
  axes[0, 0].legend(fontsize=6, loc="lower left")
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def particle_animation(trajectory_per_method, source, target, methods, tau, path,
                       every: int = 5):
  """GIF of all methods at one temperature; ``trajectory_per_method[m]`` is ``[T, N, 2]``."""
  plt = _plt()
  from matplotlib import animation
  trajs = [np.asarray(t) for t in trajectory_per_method]
  fig, axes = plt.subplots(1, len(methods), figsize=(2.6 * len(methods), 2.9), squeeze=False)
  dots = []
  for ax, m in zip(axes[0], methods):
    ax.scatter(*np.asarray(source).T, s=3, c="tab:blue", alpha=0.4)
    ax.scatter(*np.asarray(target).T, s=3, c="tab:red")
    dots.append(ax.scatter([], [], s=4, c="k"))
    ax.set_title(m, fontsize=8)
    ax.set_xlim(-6, 6)
    ax.set_ylim(-6, 6)
    ax.set_xticks([])
    ax.set_yticks([])
  label = fig.suptitle("")
  frames = list(range(0, trajs[0].shape[0], every))

  def update(f):
    for dot, t in zip(dots, trajs):
      dot.set_offsets(np.nan_to_num(t[f], nan=1e3))
    label.set_text(f"tau = {tau:g}, step {f}")
    return dots + [label]

  anim = animation.FuncAnimation(fig, update, frames=frames, blit=False)
  anim.save(path, writer=animation.PillowWriter(fps=15))
  plt.close(fig)


def samples_vs_target(samples: Sequence[np.ndarray], titles: Sequence[str], target: np.ndarray,
                      path: str, ncols: int = 5):
  """Scatter of each sample set (black) over the target (red)."""
  plt = _plt()
  n = len(samples)
  ncols = min(ncols, n)
  nrows = int(np.ceil(n / ncols))
  fig, axes = plt.subplots(nrows, ncols, figsize=(2.6 * ncols, 2.6 * nrows), squeeze=False)
  lim = float(np.abs(target).max()) * 1.3
  for ax in axes.flat:
    ax.axis("off")
  for ax, s, t in zip(axes.flat, samples, titles):
    ax.axis("on")
    ax.scatter(*target.T, s=1, c="tab:red", alpha=0.3)
    ax.scatter(*np.asarray(s).T, s=1, c="k")
    ax.set_xlim(-lim, lim)
    ax.set_ylim(-lim, lim)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(t, fontsize=7)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def w2_curves(curves: dict, path: str, title: str = ""):
  """``curves[label] = (steps [E], w2 [S, E])``: mean and +-std band over seeds, log y."""
  plt = _plt()
  fig, ax = plt.subplots(figsize=(4.5, 3.2))
  for label, (steps, w2) in curves.items():
    w2 = np.asarray(w2, np.float64)
    mean, std = np.nanmean(w2, 0), np.nanstd(w2, 0)
    ax.plot(steps, mean, label=label, lw=1.2)
    ax.fill_between(steps, np.maximum(mean - std, 1e-4), mean + std, alpha=0.2)
  ax.set_yscale("log")
  ax.set_xlabel("step")
  ax.set_ylabel("W2^2")
  ax.set_title(title, fontsize=8)
  ax.legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def save_image(array: np.ndarray, path: str):
  """Saves a 2-D array in [0, 1] as a grayscale PNG."""
  plt = _plt()
  plt.imsave(path, np.clip(array, 0, 1), cmap="gray", vmin=0, vmax=1)
