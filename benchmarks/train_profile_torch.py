"""The reference toy generator's training step in PyTorch, for the XLA comparison of
``benchmarks/train_profile.py``.

The same network as ``models.ResidualMLPGenerator`` with the reference settings (noise 16,
width 256, 6 residual blocks of ``256 -> 512 -> 256`` with LayerNorm and SiLU, residual
scale 0.9, output 2), batch 1024, AdamW(2e-4, weight decay 0.01), and a squared error to a
fixed target in place of the drift (at T = 1 the drift is a few per cent of the step).
Torch is not a dependency of this project: run it in a separate environment::

    python -m venv /tmp/torchvenv && /tmp/torchvenv/bin/pip install torch==2.13.0 numpy
    /tmp/torchvenv/bin/python benchmarks/train_profile_torch.py --threads 1 2

Prints one JSON line per (threads, part): milliseconds per call (median of ``--repeats``
timings of ``--inner`` calls each) and GFLOP/s by the count of
``benchmarks/train_profile.py`` (the matmuls only).
"""
import argparse
import json
import statistics
import time

import torch
from torch import nn

NOISE, WIDTH, BLOCKS, EXPANSION, OUT = 16, 256, 6, 2, 2


def matmul_flops(batch: int) -> int:
  """Forward multiply-adds of the network's matmuls, times 2."""
  wide = EXPANSION * WIDTH
  return 2 * batch * (NOISE * WIDTH + BLOCKS * 2 * WIDTH * wide + WIDTH * OUT)


class Block(nn.Module):

  def __init__(self):
    super().__init__()
    wide = EXPANSION * WIDTH
    self.w1, self.n1 = nn.Linear(WIDTH, wide), nn.LayerNorm(wide)
    self.w2, self.n2 = nn.Linear(wide, WIDTH), nn.LayerNorm(WIDTH)

  def forward(self, h):
    return h + 0.9 * self.n2(self.w2(nn.functional.silu(self.n1(self.w1(h)))))


class Generator(nn.Module):

  def __init__(self):
    super().__init__()
    self.inp, self.norm = nn.Linear(NOISE, WIDTH), nn.LayerNorm(WIDTH)
    self.blocks = nn.Sequential(*[Block() for _ in range(BLOCKS)])
    self.out = nn.Linear(WIDTH, OUT)

  def forward(self, eps):
    return self.out(self.blocks(nn.functional.silu(self.norm(self.inp(eps)))))


def median_ms(fn, inner: int, repeats: int) -> float:
  fn()
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    for _ in range(inner):
      fn()
    times.append((time.perf_counter() - t0) / inner)
  return 1e3 * statistics.median(times)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--threads", type=int, nargs="+", default=[1])
  parser.add_argument("--batch", type=int, default=1024)
  parser.add_argument("--inner", type=int, default=20)
  parser.add_argument("--repeats", type=int, default=7)
  args = parser.parse_args()
  torch.manual_seed(0)
  model = Generator()
  opt = torch.optim.AdamW(model.parameters(), lr=2e-4, weight_decay=0.01)
  eps = torch.randn(args.batch, NOISE)
  target = torch.randn(args.batch, OUT)
  h = torch.randn(args.batch, WIDTH)
  w1 = torch.randn(WIDTH, EXPANSION * WIDTH) * 0.01
  w2 = torch.randn(EXPANSION * WIDTH, WIDTH) * 0.01

  def loss():
    return ((model(eps) - target) ** 2).sum(-1).mean()

  def dots():
    x = h
    for _ in range(BLOCKS):
      x = x + (x @ w1) @ w2 * 1e-3
    return x

  def forward():
    with torch.no_grad():
      return model(eps)

  def grad():
    model.zero_grad(set_to_none=True)
    loss().backward()

  def step():
    opt.zero_grad(set_to_none=True)
    loss().backward()
    opt.step()

  fwd_flops = matmul_flops(args.batch)
  parts = [("matmuls of the forward", dots, BLOCKS * 2 * 2 * args.batch * WIDTH * EXPANSION * WIDTH),
           ("forward", forward, fwd_flops), ("forward + backward", grad, 3 * fwd_flops),
           ("step (AdamW)", step, 3 * fwd_flops)]
  for threads in args.threads:
    torch.set_num_threads(threads)
    for name, fn, flops in parts:
      ms = median_ms(fn, args.inner, args.repeats)
      print(json.dumps(dict(framework=f"torch {torch.__version__}", threads=threads,
                            part=name, ms=round(ms, 3),
                            gflops=round(flops / ms / 1e6, 1))), flush=True)


if __name__ == "__main__":
  main()
