"""Trust claims that must not exceed what was checked: the real CLI against the fake Hub.

- A SHA256 remembered from an earlier read is reused only for the same file unchanged
  (fast hash, path, size and mtime), never for another file with the same fast hash, and
  never with --refresh.
- A sharded set is `verified` only when every one of its files has the SHA256 the Hub lists.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from cli import run_cli_here as run_cli  # in this process (tests/cli.py)
from cli import trust_fields
from factories import make_safetensors, make_sharded_safetensors
from fakehub import FakeHub

from modelimport.hashing import fast_hash

BIG = 40 << 20  # well over the first and last 8 MiB that the fast hash reads


def _flip_middle_byte(path: Path) -> None:
    """Change one byte the fast hash never reads; size stays, mtime moves on."""
    middle = path.stat().st_size // 2
    with open(path, "r+b") as fh:
        fh.seek(middle)
        old = fh.read(1)
        fh.seek(middle)
        fh.write(bytes([old[0] ^ 0xFF]))


def _lookup(path: Path, env: dict[str, str], *flags: str) -> dict:
    run = run_cli("lookup", path, "--json", *flags, env=env)
    assert run.code == 0, run.stderr
    [report] = run.json["results"]
    return report


def _claim(report: dict) -> tuple:
    return report["trust"], report["match_method"], report["status"]


def _import(lib: Path, path: Path, env: dict[str, str], *flags: str) -> dict:
    run = run_cli("--library", lib, "import", path, "--yes", "--json", *flags, env=env)
    assert run.code == 0, run.stderr
    [result] = run.json["results"]
    assert result["status"] == "imported", result
    return json.loads((lib / result["model_id"] / "metadata.json").read_text())


def test_a_file_changed_after_import_is_not_verified_by_its_fast_hash(
    tmp_path: Path, fake_hub: FakeHub, fake_hub_env: dict[str, str]
):
    path = make_safetensors(tmp_path / "dl" / "Qwen2-7B-Instruct.safetensors", padding=BIG)
    fake_hub.add_repo("Qwen/Qwen2-7B-Instruct", {path.name: path.read_bytes()}, downloads=5)
    lib = tmp_path / "lib"
    meta = _import(lib, path, fake_hub_env)
    assert meta["trust_level"] == "verified"
    copy = lib / meta["model_id"] / meta["files"][0]["name"]

    before = fast_hash(path)
    _flip_middle_byte(path)
    assert fast_hash(path) == before  # the case the fast hash alone cannot tell apart

    # Seen before, but not this content: the SHA256 is compared on import or with --verify.
    changed = _lookup(path, fake_hub_env)
    assert _claim(changed) == ("high_confidence", "filename_exact", "pending verification")
    assert changed["file"]["sha256"] is None
    read = _lookup(path, fake_hub_env, "--verify")
    assert _claim(read) == ("modified", "hash_mismatch", "modified")

    # The untouched library copy is still the Hub's file, whatever was read since.
    assert _claim(_lookup(copy, fake_hub_env)) == ("verified", "hash", "verified")

    # Unchanged since --verify read it: known unread; --refresh forgets what was remembered.
    assert _claim(_lookup(path, fake_hub_env)) == ("modified", "hash_mismatch", "modified")
    refreshed = _lookup(path, fake_hub_env, "--refresh")
    assert _claim(refreshed) == ("high_confidence", "filename_exact", "pending verification")


def test_a_remembered_sha256_is_not_lent_to_another_file_or_a_touched_one(
    tmp_path: Path, fake_hub: FakeHub, fake_hub_env: dict[str, str]
):
    path = make_safetensors(tmp_path / "a" / "Mistral-7B-v0.1.safetensors", padding=BIG)
    fake_hub.add_repo("mistralai/Mistral-7B-v0.1", {path.name: path.read_bytes()})
    assert _lookup(path, fake_hub_env, "--verify")["trust"] == "verified"
    assert _claim(_lookup(path, fake_hub_env)) == ("verified", "hash", "verified")

    twin = tmp_path / "b" / path.name
    twin.parent.mkdir()
    twin.write_bytes(path.read_bytes())
    _flip_middle_byte(twin)
    os.utime(twin, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns))  # same size and mtime
    assert fast_hash(twin) == fast_hash(path)
    other = _lookup(twin, fake_hub_env)
    assert _claim(other) == ("high_confidence", "filename_exact", "pending verification")

    os.utime(path)  # touched: maybe rewritten, so read again before it is called verified
    touched = _lookup(path, fake_hub_env)
    assert _claim(touched) == ("high_confidence", "filename_exact", "pending verification")


def _hub_shards(fake_hub: FakeHub, files: list[Path], repo_id: str) -> dict:
    return fake_hub.add_repo(repo_id, {p.name: p.read_bytes() for p in files}, downloads=9)


def test_a_set_with_a_shard_the_hub_lists_no_hash_for_is_not_verified(
    tmp_path: Path, fake_hub: FakeHub, fake_hub_env: dict[str, str]
):
    files = make_sharded_safetensors(tmp_path / "dl" / "Big-Model-70B", total=3)
    repo = _hub_shards(fake_hub, files, "org/Big-Model-70B")
    repo.files[files[2].name].lfs = False  # shard 3 kept in git: a size, no sha256
    _flip_middle_byte(files[2])  # and the local shard 3 is not the Hub's
    meta = _import(tmp_path / "lib", files[0].parent, fake_hub_env)
    assert meta["is_sharded_set"] is True and meta["repo_id"] == "org/Big-Model-70B"
    assert trust_fields(meta) == ("high_confidence", "filename_exact", 0.95, False)
    assert meta["pending_verification"] is False  # nothing left that could be compared


def test_a_set_with_a_shard_of_another_size_stays_modified(
    tmp_path: Path, fake_hub: FakeHub, fake_hub_env: dict[str, str]
):
    files = make_sharded_safetensors(tmp_path / "dl" / "Big-Model-70B", total=3)
    repo = _hub_shards(fake_hub, files, "org/Big-Model-70B")
    repo.files[files[1].name].size += 8  # shard 2 on the Hub is not the local one
    meta = _import(tmp_path / "lib", files[0].parent, fake_hub_env)
    assert trust_fields(meta) == ("modified", "hash_mismatch", 0.7, True)


def test_an_incomplete_set_is_at_most_high_confidence(
    tmp_path: Path, fake_hub: FakeHub, fake_hub_env: dict[str, str]
):
    files = make_sharded_safetensors(tmp_path / "dl" / "Big-Model-70B", total=3)
    _hub_shards(fake_hub, files, "org/Big-Model-70B")
    files[2].unlink()  # every shard present is the Hub's, but shard 3 is missing
    meta = _import(tmp_path / "lib", files[0].parent, fake_hub_env, "--allow-incomplete")
    assert meta["incomplete_set"] is True and meta["missing_shards"]
    assert trust_fields(meta) == ("high_confidence", "filename_exact", 0.95, False)
    assert meta["pending_verification"] is False


def test_a_whole_set_equal_to_the_hub_is_verified(
    tmp_path: Path, fake_hub: FakeHub, fake_hub_env: dict[str, str]
):
    files = make_sharded_safetensors(tmp_path / "dl" / "Big-Model-70B", total=3)
    _hub_shards(fake_hub, files, "org/Big-Model-70B")
    meta = _import(tmp_path / "lib", files[0].parent, fake_hub_env)
    assert trust_fields(meta) == ("verified", "hash", 1.0, False)


def test_same_name_files_with_other_bytes_never_make_a_wrong_repo_verified_or_high(
    tmp_path: Path, fake_hub: FakeHub, fake_hub_env: dict[str, str]
):
    """Two repos hold a file of this name and size, neither with these bytes: the lookup
    cannot say which (not high confidence), and the import finds neither holds them."""
    path = make_safetensors(tmp_path / "dl" / "Qwen2-7B-Instruct.safetensors", padding=BIG)
    size = path.stat().st_size
    fake_hub.add_repo("Qwen/Qwen2-7B-Instruct", {path.name: (size, "1" * 64)}, downloads=50)
    fake_hub.add_repo("mirror/Qwen2-7B-Instruct", {path.name: (size, "2" * 64)}, downloads=5)
    looked = _lookup(path, fake_hub_env)
    assert looked["trust"] == "low_confidence" and looked["match_method"] == "filename_exact"
    assert _claim(_lookup(path, fake_hub_env, "--verify"))[0] == "modified"
    meta = _import(tmp_path / "lib", path, fake_hub_env)
    assert trust_fields(meta) == ("modified", "hash_mismatch", 0.7, True)


def test_a_catalog_candidate_is_trusted_only_as_far_as_its_listing_and_hash_go(
    tmp_path: Path, fake_hub: FakeHub, fake_hub_env: dict[str, str]
):
    """`sd_xl_base_1.0.safetensors` is in the catalog; the catalog's repo holds another file
    of that name and size here, and no other repo holds these bytes: modified, not verified."""
    path = make_safetensors(tmp_path / "dl" / "sd_xl_base_1.0.safetensors", padding=BIG)
    fake_hub.add_repo(
        "stabilityai/stable-diffusion-xl-base-1.0",
        {path.name: (path.stat().st_size, "3" * 64)},
        downloads=10**6,
    )
    looked = _lookup(path, fake_hub_env)
    assert looked["repo_id"] == "stabilityai/stable-diffusion-xl-base-1.0"
    assert _claim(_lookup(path, fake_hub_env, "--verify"))[0] == "modified"
    meta = _import(tmp_path / "lib", path, fake_hub_env)
    assert trust_fields(meta) == ("modified", "hash_mismatch", 0.7, True)
