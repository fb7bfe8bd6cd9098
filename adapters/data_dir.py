"""Where the data sets live: ``--data-dir`` (``data_dir`` from Python), else ``$BINDIFF_DATA_DIR``.
One answer for the interaction and the mask adapters."""

from __future__ import annotations

import os
from pathlib import Path

from .errors import DataError

DATA_DIR_ENV = "BINDIFF_DATA_DIR"


def data_root(argument: str | os.PathLike | None) -> Path | None:
    """The folder of the data sets, or None when neither is given. A ``--data-dir`` naming a file is
    refused: it was searched as a folder, a download tried, and the help said the variable was unset."""
    if argument is not None:
        path = Path(argument).expanduser()
        if path.exists() and not path.is_dir():
            from ..arguments import argument  # --data-dir from the command, data_dir from Python

            raise DataError(f"{argument('data_dir', '--data-dir')} {path}: a file, not a folder; give the folder "
                            "that holds the data sets")
        return Path(os.path.abspath(path))  # runs store the paths they read: valid from any folder
    value = os.environ.get(DATA_DIR_ENV)
    return Path(os.path.abspath(Path(value).expanduser())) if value else None
