"""The README's Python snippet runs verbatim (and prints what the README says it prints),
and the heatmap example writes a PNG of the right shape."""

import os
import pathlib
import re
import subprocess
import sys

import numpy as np

from conftest import SOURCE_DIR, model_dir, require_model


def run_python(args, cwd):
    env = dict(os.environ, MPLBACKEND="Agg")
    return subprocess.run([sys.executable] + args, cwd=cwd, env=env, check=True, capture_output=True, text=True).stdout


def readme_python_section():
    text = (SOURCE_DIR / "README.md").read_text()
    section = text.split("\n## Python\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    printed = re.findall(r"```text\n(.*?)```", section, re.S)
    return blocks[0], printed[0]


def test_readme_snippet_runs_verbatim(tmp_path):
    require_model("stories260K/stories260K.bin")
    code, printed = readme_python_section()
    (tmp_path / "models").symlink_to(model_dir())  # the snippet's paths are relative to the repo root
    (tmp_path / "snippet.py").write_text(code)
    out = run_python(["snippet.py"], tmp_path)
    assert out == printed


def test_heatmap_example_writes_a_png(tmp_path):
    model = require_model("stories260K/stories260K.bin")
    png = tmp_path / "heatmap.png"
    out = run_python([str(SOURCE_DIR / "python" / "examples" / "explain_heatmap.py"), str(model),
                      "--output", str(png)], tmp_path)
    assert "prediction after the prompt: ' to'" in out
    import matplotlib.image
    image = matplotlib.image.imread(png)
    assert image.ndim == 3 and min(image.shape[:2]) >= 600  # 22 tokens: a 7.7 in figure at 100 dpi
    assert np.unique(image.reshape(-1, image.shape[2]), axis=0).shape[0] > 50  # a picture, not a blank
