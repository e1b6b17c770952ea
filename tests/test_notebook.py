"""The quick-start notebook (docs/quickstart.ipynb) runs, offline, as written."""
import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOK = os.path.join(ROOT, "docs", "quickstart.ipynb")


def _code(notebook_path: str) -> str:
  with open(notebook_path) as f:
    nb = json.load(f)
  assert nb["nbformat"] == 4
  cells = ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code"]
  assert cells, "the notebook has no code cells"
  return "\n\n".join(cells)


@pytest.mark.heavy
def test_quickstart_notebook_executes(tmp_path):
  """Every code cell, in order, in a fresh interpreter started in docs/ (as Jupyter would
  be); figures go to the Agg backend. No Jupyter kernel is needed: the cells are plain
  Python. The notebook asserts its own checks (the spec equals drift_field)."""
  script = tmp_path / "quickstart.py"
  script.write_text(_code(NOTEBOOK))
  env = dict(os.environ, MPLBACKEND="Agg", TMPDIR=str(tmp_path))
  out = subprocess.run([sys.executable, str(script)], cwd=os.path.join(ROOT, "docs"),
                       env=env, capture_output=True, text=True, timeout=600)
  assert out.returncode == 0, out.stderr[-3000:]
  assert "W2^2 over training" in out.stdout
  assert "metrics.jsonl" in out.stdout and "config.json" in out.stdout
  assert "| 8gaussians | Gaussian | 0.05 | sinkhorn |" in out.stdout
  # The generator learned: the last W2^2 is below the first.
  line = next(l for l in out.stdout.splitlines() if l.startswith("W2^2 over training"))
  values = json.loads(line.split(":", 1)[1].strip())
  assert values[-1] < values[0], values
