"""The one way evaluators write their provenance beside the metrics: ``<evaluator>-details.json`` in the cell's folder.

Metrics are plain floats; what they were measured with (extractor, sample counts, kept labels, histograms) goes
here, and the leaderboard picks it up into ``results.csv``'s details column.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from harness import TrainedModel


def write_details(model: TrainedModel, evaluator: str, details: Mapping[str, Any]) -> None:
    path = Path(model.workdir) / f"{evaluator}-details.json"
    path.write_text(json.dumps(details, indent=2) + "\n", encoding="utf-8")
