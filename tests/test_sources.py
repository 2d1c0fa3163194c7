"""A source is imported only as it was reviewed (importer/sources.py), and its library copy
is never more readable than it was.

The review waits for a person; meanwhile the reviewed path can be replaced. The real CLI on
a pseudo-terminal shows the attack as a person would meet it; in-process runs (plan, then a
change, then the copy: the same functions the CLI calls around its prompt) cover each kind
of change.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from pathlib import Path

import pytest
from cli import library_files
from factories import make_safetensors

from modelimport.importer.pipeline import ImportOptions, execute_plan, plan_import
from modelimport.library.maintenance import open_library

PRIVATE = b"-----BEGIN OPENSSH PRIVATE KEY----- not for the library"


def _private_file(tmp_path: Path) -> Path:
    secret = tmp_path / "private" / "id_ed25519"
    secret.parent.mkdir()
    secret.write_bytes(PRIVATE)
    secret.chmod(0o600)
    return secret


def _library_holds(lib: Path, data: bytes) -> bool:
    return any(p.read_bytes() == data for p in library_files(lib) if p.name != "metadata.json")


def test_a_source_swapped_for_a_link_during_the_review_is_not_copied(tmp_path: Path):
    import pexpect
    from test_review import _spawn_on_terminal

    source = make_safetensors(tmp_path / "dl" / "model.safetensors")
    secret = _private_file(tmp_path)
    lib = tmp_path / "lib"
    child = _spawn_on_terminal(["--library", str(lib), "import", str(source), "--offline"])
    child.expect(r"model\(s\)\?")
    source.unlink()
    source.symlink_to(secret)  # the reviewed file is now a link to a private one
    child.sendline("")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 1, child.before
    assert "replaced or changed after it was reviewed" in child.before
    assert "Traceback" not in child.before
    assert not _library_holds(lib, PRIVATE)
    assert library_files(lib) == []


def _swap_link(source: Path, secret: Path) -> None:
    source.unlink()
    source.symlink_to(secret)


def _rename_over(source: Path, secret: Path) -> None:
    other = source.with_name("other")
    other.write_bytes(PRIVATE)
    os.replace(other, source)


def _grow(source: Path, secret: Path) -> None:
    with open(source, "ab") as fh:
        fh.write(PRIVATE)


def _retarget_link(source: Path, secret: Path) -> None:
    # The source was a link when collected (a Hugging Face cache file is one): a link that
    # now points somewhere else is another file.
    source.unlink()
    source.symlink_to(secret)


@pytest.mark.parametrize("move", [False, True], ids=["copy", "move"])
@pytest.mark.parametrize(
    "change", [_swap_link, _rename_over, _grow, _retarget_link], ids=lambda f: f.__name__[1:]
)
def test_a_source_changed_between_plan_and_copy_is_refused(
    tmp_path: Path, change: Callable[[Path, Path], None], move: bool
):
    secret = _private_file(tmp_path)
    folder = tmp_path / "dl"
    if change is _retarget_link:
        real = make_safetensors(tmp_path / "blobs" / "abc123")
        folder.mkdir()
        source = folder / "model.safetensors"
        source.symlink_to(real)
    else:
        source = make_safetensors(folder / "model.safetensors")
    kept = make_safetensors(folder / "other-model.safetensors", {"b": ("F32", [3])})
    lib = tmp_path / "lib"
    opened = open_library(lib)
    options = ImportOptions(move=move)
    plan = plan_import([source, kept], opened.library, opened.db, options)
    assert len(plan.models) == 2
    change(source, secret)
    results = {r.sources[0]: r for r in execute_plan(plan, opened.library, opened.db, options)}
    refused = results[str(source)]
    assert refused.status == "failed"
    assert "replaced or changed after it was reviewed" in (refused.error or "")
    assert results[str(kept)].status == "imported"  # one bad file never stops the batch
    assert not _library_holds(lib, PRIVATE)
    assert secret.read_bytes() == PRIVATE  # a move never takes what was swapped in
    assert os.path.lexists(source)  # nor the link or file now at the path


@pytest.mark.parametrize("mode", [0o600, 0o640, 0o644])
def test_a_library_copy_is_never_more_readable_than_its_source(tmp_path: Path, mode: int):
    source = make_safetensors(tmp_path / "dl" / "model.safetensors")
    source.chmod(mode)
    lib = tmp_path / "lib"
    opened = open_library(lib)
    plan = plan_import([source], opened.library, opened.db, ImportOptions())
    [result] = execute_plan(plan, opened.library, opened.db, ImportOptions())
    assert result.status == "imported", result.error
    copy = lib / result.model_id / "model.safetensors"
    copied = stat.S_IMODE(copy.stat().st_mode)
    assert copied & 0o077 & ~mode == 0, oct(copied)  # nothing the source did not allow
    assert copied & 0o600 == 0o600  # the library can still read and replace its file
