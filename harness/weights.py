"""Where pretrained weights files are found, and the one error that says what to place where when they are not."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse

import torch

from harness.api import PluginUnavailable


def _home_relative(path: Path) -> str:
    try:
        return f"~/{path.relative_to(Path.home())}"
    except ValueError:
        return str(path)


def pretrained_weights(
    what: str, url: str, option: str, weights_path: str | None = None, download: bool = False, alternative: str = ""
) -> Path:
    """The weights file published at ``url``: ``weights_path`` when given, else the file of the same name in
    torch.hub's checkpoint folder (``$TORCH_HOME`` honoured), downloaded there first when ``download`` is set.

    Call it from ``check_available`` (before training) and again where the weights load. ``what`` names the weights
    in messages ("Inception"); ``option`` is the key prefix users set (``fid`` for ``fid.weights_path``);
    ``alternative`` is appended to the fix (", or use fid.extractor: classifier"). Raises ``PluginUnavailable``
    naming the file and the folder it belongs in; nothing is fetched unless ``download`` is true.
    """
    filename = Path(urlparse(url).path).name
    if weights_path is not None:
        path = Path(weights_path).expanduser()
        if not path.is_file():
            raise PluginUnavailable(
                f"the {what} weights file {weights_path} does not exist",
                f"Place {filename} there or fix {option}.weights_path{alternative}.",
            )
        return path
    checkpoints = Path(torch.hub.get_dir()) / "checkpoints"
    path = checkpoints / filename
    if path.is_file():
        return path
    fix = (
        f"Place {filename} in {_home_relative(checkpoints)}/ or set {option}.weights_path "
        f"(or {option}.download: true when online){alternative}."
    )
    if not download:
        raise PluginUnavailable(f"the {what} weights are not available offline", fix)
    checkpoints.mkdir(parents=True, exist_ok=True)
    try:
        torch.hub.download_url_to_file(url, str(path))
    except Exception as exc:  # noqa: BLE001 - any network or file error means "not available"
        raise PluginUnavailable(f"downloading the {what} weights failed: {exc}", fix) from None
    return path
