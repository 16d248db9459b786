"""The README's examples say what the repository does: its example benchmark is the real `quick`."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).parents[1]


def test_the_readme_s_example_yaml_is_the_quick_benchmark_as_benchmarks_yaml_has_it():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    block = re.search(r"The default, `quick`, as.*?```yaml\n(.*?)```", readme, re.S)
    assert block is not None, "the README's example of the quick benchmark is gone"
    shown = yaml.safe_load(block.group(1))["benchmarks"]["quick"]
    real = yaml.safe_load((ROOT / "benchmarks.yaml").read_text(encoding="utf-8"))["benchmarks"]["quick"]
    real.pop("description")
    assert shown == real
