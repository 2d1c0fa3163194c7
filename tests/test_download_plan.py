"""What `downloads.plan` takes from a repo listing: hostile names refused, never placed."""

from __future__ import annotations

import pytest

from modelimport.downloads.plan import (
    NothingToDownload,
    downloadable,
    plan_downloads,
    safe_dest,
)
from modelimport.identify.hub.records import RepoFileEntry, RepoListing

SHA = {n: f"{n}" * 64 for n in "12345"}


def _listing(*entries: RepoFileEntry) -> RepoListing:
    return RepoListing("org/x", "0" * 40, 1, (), None, None, False, {}, entries)


def _shard(n: int, folder: str = "", sha: str | None = None) -> RepoFileEntry:
    name = f"model-{n:05d}-of-00003.safetensors"
    return RepoFileEntry(f"{folder}{name}", 100, sha or SHA[str(n)])


def _record(*present: int, missing: tuple[int, ...] = ()) -> dict:
    files = [
        {
            "name": f"model-{n:05d}-of-00003.safetensors",
            "original_name": f"model-{n:05d}-of-00003.safetensors",
            "sha256": SHA[str(n)],
            "format": "safetensors",
            "shard_index": n,
            "shard_total": 3,
        }
        for n in present
    ]
    return {
        "files": files,
        "is_sharded_set": True,
        "incomplete_set": bool(missing),
        "missing_shards": [f"model-{n:05d}-of-00003.safetensors" for n in missing],
        "hub": {},
    }


@pytest.mark.parametrize(
    ("name", "safe"),
    [
        ("config.json", "config.json"),
        ("1_Pooling/config.json", "1_Pooling/config.json"),
        ("../config.json", None),
        ("/etc/passwd", None),
        ("a/../../b", None),
        ("a//b", None),
        ("a/b/c/d.json", None),  # deeper than a related file ever is
        ("con fig\x1b[2J.json", "con-fig-2J.json"),
    ],
)
def test_safe_dest(name: str, safe: str | None):
    assert safe_dest(name) == safe


def test_downloadable_refuses_what_could_escape_or_not_be_created():
    assert downloadable("sub/model-00001-of-00002.safetensors")
    for bad in ("../x", "/x", "a/./b", "x\x00", "a\\..\\b", "x" * 161 + ".json"):
        assert not downloadable(bad), bad


def test_missing_shards_come_from_the_folder_of_the_present_ones():
    listing = _listing(
        _shard(1, "other/", sha="f" * 64),
        _shard(2, "other/"),
        _shard(1, "q4/"),
        _shard(2, "q4/"),
        _shard(3, "q4/"),
    )
    plan = plan_downloads(
        "llm/x/y", _record(1, 3, missing=(2,)), listing, missing_shards=True, related=False
    )
    assert [(i.repo_path, i.dest, i.shard_index) for i in plan.items] == [
        ("q4/model-00002-of-00003.safetensors", "model-00002-of-00003.safetensors", 2)
    ]
    assert plan.folder == "q4"


def test_a_present_shard_with_another_hash_refuses_the_repo():
    listing = _listing(_shard(1, sha="e" * 64), _shard(2), _shard(3))
    with pytest.raises(NothingToDownload, match="mix two models"):
        plan_downloads(
            "llm/x/y", _record(1, 3, missing=(2,)), listing, missing_shards=True, related=False
        )


def test_a_shard_the_hub_lists_no_hash_for_is_not_downloaded():
    listing = _listing(_shard(1), RepoFileEntry("model-00002-of-00003.safetensors", 100), _shard(3))
    with pytest.raises(NothingToDownload, match="no SHA256"):
        plan_downloads(
            "llm/x/y", _record(1, 3, missing=(2,)), listing, missing_shards=True, related=False
        )


def test_related_files_from_a_hostile_listing_are_skipped_not_placed():
    listing = _listing(
        _shard(1),
        _shard(2),
        _shard(3),
        RepoFileEntry("config.json", 10),
        RepoFileEntry("../model.safetensors.index.json", 10),  # `*` in a pattern spans `/`
        RepoFileEntry("pytorch_model.bin.index.json", 10),  # another set's weight map
        RepoFileEntry("model.safetensors.index.json", 10),
        RepoFileEntry("tokenizer.json", 1 << 40),  # no tokenizer is a terabyte
    )
    plan = plan_downloads("llm/x/y", _record(1, 2, 3), listing, missing_shards=True, related=True)
    assert sorted((i.dest, i.role) for i in plan.items) == [
        ("config.json", "config"),
        ("model.safetensors.index.json", "index"),
    ]
    assert len(plan.skipped) == 2


def test_a_set_inside_a_bundle_is_completed_in_its_own_subfolder():
    name = "diffusion_pytorch_model-{:05d}-of-00002.safetensors"
    record = {
        "bundle": {"kind": "diffusers", "root": "sdxl"},
        "files": [
            {"name": "model_index.json", "role": "config", "format": "json"},
            {"name": f"unet/{name.format(1)}", "sha256": SHA["1"], "format": "safetensors",
             "role": "weights", "shard_index": 1, "shard_total": 2},
            {"name": "vae/diffusion_pytorch_model.safetensors", "sha256": SHA["3"],
             "format": "safetensors", "role": "weights"},
        ],
        "is_sharded_set": True,
        "incomplete_set": True,
        "missing_shards": [name.format(2)],
    }
    listing = _listing(
        RepoFileEntry("model_index.json", 10),
        RepoFileEntry(f"unet/{name.format(1)}", 100, SHA["1"]),
        RepoFileEntry(f"unet/{name.format(2)}", 100, SHA["2"]),
        RepoFileEntry("vae/diffusion_pytorch_model.safetensors", 100, SHA["3"]),
    )
    plan = plan_downloads("checkpoint/sdxl/x", record, listing, missing_shards=True, related=False)
    assert [(i.repo_path, i.dest) for i in plan.items] == [
        (f"unet/{name.format(2)}", f"unet/{name.format(2)}")
    ]
    assert plan.folder == "" and plan.expected_sha256[f"unet/{name.format(2)}"] == SHA["2"]
