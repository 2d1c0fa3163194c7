"""The publisher file index (issue 18): built with the real huggingface_hub session over HTTP
from the fake Hub, refreshed incrementally, read offline, and used by `import` and `lookup`
for files whose repos share nothing with their names (repackagers, bucket repos)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from cli import run_cli, trust_fields
from factories import make_safetensors
from fakehub import FakeHub

from modelimport.identify.publishers import open_index, update_index
from modelimport.identify.publishers import update as update_module

LORA = {"lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight": ("F16", [4, 8]),
        "lora_unet_down_blocks_0_attentions_0_proj_in.lora_up.weight": ("F16", [8, 4])}


def _file(folder: Path, name: str, fill: bytes) -> tuple[Path, bytes]:
    path = make_safetensors(folder / name, {"w": ("F16", [64, 64])}, fill=fill)
    return path, path.read_bytes()


def _world(hub: FakeHub, dl: Path) -> dict[str, Path]:
    """Two publishers of the kinds people download from: a repackager whose repos hold many
    files under folders, and one person's bucket repo of unrelated files; plus noise."""
    vae, vae_bytes = _file(dl, "wan_2.1_vae.safetensors", b"\x01")
    enc, enc_bytes = _file(dl, "umt5_xxl_fp8_e4m3fn_scaled.safetensors", b"\x02")
    upscale, up_bytes = _file(dl, "4xNomos8kSCHAT-L.safetensors", b"\x03")
    hub.add_repo(
        "Comfy-Org/Wan_2.1_ComfyUI_repackaged",
        {f"split_files/vae/{vae.name}": vae_bytes,
         f"split_files/text_encoders/{enc.name}": enc_bytes,
         "README.md": b"# repack"},
        downloads=900,
    )
    hub.add_repo("Comfy-Org/other_repackaged", {"split_files/x.safetensors": b"x" * 64})
    hub.add_repo("someone/fav_models", {f"upscalers/{upscale.name}": up_bytes,
                                        "misc/unrelated.safetensors": b"y" * 80})
    hub.add_repo("noise/wan-2.1-vae-fan-remix", {"remix.safetensors": b"z" * 100}, downloads=5)
    return {"vae": vae, "encoder": enc, "upscaler": upscale}


def _build(hub: FakeHub, cache: Path, publishers: tuple[str, ...] = ("Comfy-Org", "someone")):
    return update_index(list(publishers), endpoint=hub.url, cache_dir=cache, timeout=5)


def test_update_lists_each_publisher_then_each_repo_once(tmp_path: Path, fake_hub: FakeHub):
    _world(fake_hub, tmp_path / "dl")
    report = _build(fake_hub, tmp_path / "cache")
    assert report.failures == {}
    assert (report.repos_seen, report.repos_listed, report.repos_unchanged) == (3, 3, 0)
    assert fake_hub.counts["author_list"] == 2 and fake_hub.counts["model_info"] == 3
    assert report.stats is not None and report.stats.files == 6
    assert report.stats.bytes_on_disk > 0
    index = open_index(fake_hub.url, tmp_path / "cache")
    assert index is not None
    listing = index.listing("someone/fav_models")
    assert listing is not None
    assert {f.path for f in listing.files} == {"upscalers/4xNomos8kSCHAT-L.safetensors",
                                               "misc/unrelated.safetensors"}
    index.close()


def test_a_second_update_costs_no_call_for_an_unchanged_repo(tmp_path: Path, fake_hub: FakeHub):
    _world(fake_hub, tmp_path / "dl")
    _build(fake_hub, tmp_path / "cache")
    fake_hub.reset_counts()
    again = _build(fake_hub, tmp_path / "cache")
    assert (again.repos_listed, again.repos_unchanged) == (0, 3)
    assert fake_hub.counts["model_info"] == 0 and fake_hub.counts["author_list"] == 2
    # One repo changes, one disappears: one listing, one repo dropped, nothing else.
    fake_hub.repos["someone/fav_models"].last_modified = "2025-06-01T00:00:00.000Z"
    fake_hub.repos["someone/fav_models"].files.pop("misc/unrelated.safetensors")
    del fake_hub.repos["Comfy-Org/other_repackaged"]
    fake_hub.reset_counts()
    third = _build(fake_hub, tmp_path / "cache")
    assert (third.repos_listed, third.repos_unchanged, third.repos_dropped) == (1, 1, 1)
    assert fake_hub.counts["model_info"] == 1
    index = open_index(fake_hub.url, tmp_path / "cache")
    assert index is not None
    assert index.listing("Comfy-Org/other_repackaged") is None
    assert index.repos_holding([]) == []
    index.close()


def test_a_publisher_with_more_repos_than_a_page_is_followed_page_by_page(
    tmp_path: Path, fake_hub: FakeHub, monkeypatch: pytest.MonkeyPatch
):
    for n in range(5):
        fake_hub.add_repo(f"bucket/r{n}", {f"f{n}.safetensors": bytes([n]) * 32})
    monkeypatch.setattr(update_module, "PAGE_SIZE", 2)
    report = _build(fake_hub, tmp_path / "cache", ("bucket",))
    assert fake_hub.counts["author_list"] == 3  # pages of 2, 2, 1 through the Link header
    assert report.repos_seen == 5 and report.stats is not None and report.stats.files == 5


def test_a_hub_that_cannot_be_reached_leaves_the_index_as_it_was(
    tmp_path: Path, fake_hub: FakeHub
):
    _world(fake_hub, tmp_path / "dl")
    _build(fake_hub, tmp_path / "cache")
    fake_hub.fail(500)
    report = _build(fake_hub, tmp_path / "cache")
    assert set(report.failures) == {"Comfy-Org"}  # the update stops at the first: Hub down
    assert "HTTP 500" in report.failures["Comfy-Org"]
    assert report.stats is not None and report.stats.repos == 3


def test_a_file_in_a_bucket_repo_imports_verified_with_the_hub_offline(
    tmp_path: Path, fake_hub: FakeHub, fake_hub_env: dict[str, str]
):
    files = _world(fake_hub, tmp_path / "dl")
    _build(fake_hub, Path(fake_hub_env["MODELIMPORT_CACHE_DIR"]))
    url = fake_hub.url
    fake_hub.stop()  # no Hub at all from here on
    env = {**fake_hub_env, "HF_HUB_OFFLINE": "1", "HF_ENDPOINT": url}
    run = run_cli("--library", tmp_path / "lib", "import", files["upscaler"], "--yes",
                  "--json", env=env)
    assert run.code == 0, run.stderr
    [result] = run.json["results"]
    meta = json.loads((tmp_path / "lib" / result["model_id"] / "metadata.json").read_text())
    assert trust_fields(meta) == ("verified", "hash", 1.0, False)
    assert meta["repo_id"] == "someone/fav_models"
    assert meta["pending_online_lookup"] is False
    assert meta["hub"]["listing_source"] == "publisher_index"
    assert meta["hub"]["listing_date"]


def test_a_renamed_file_is_found_by_its_sha256_after_the_copy(
    tmp_path: Path, fake_hub: FakeHub, fake_hub_env: dict[str, str]
):
    files = _world(fake_hub, tmp_path / "dl")
    _build(fake_hub, Path(fake_hub_env["MODELIMPORT_CACHE_DIR"]))
    renamed = files["vae"].rename(files["vae"].with_name("my video vae.safetensors"))
    env = {**fake_hub_env, "HF_HUB_OFFLINE": "1"}
    run = run_cli("--library", tmp_path / "lib", "import", renamed, "--yes", "--json", env=env)
    assert run.code == 0, run.stderr
    [result] = run.json["results"]
    meta = json.loads((tmp_path / "lib" / result["model_id"] / "metadata.json").read_text())
    assert (meta["trust_level"], meta["repo_id"]) == (
        "verified", "Comfy-Org/Wan_2.1_ComfyUI_repackaged")
    assert meta["matched_filename"].endswith("wan_2.1_vae.safetensors")


def test_online_the_index_names_the_holder_before_any_search(
    tmp_path: Path, fake_hub: FakeHub, fake_hub_env: dict[str, str]
):
    """`umt5_xxl_fp8_e4m3fn_scaled` shares no word with `Wan_2.1_ComfyUI_repackaged`: no
    search finds it, the index does, at no Hub call."""
    files = _world(fake_hub, tmp_path / "dl")
    _build(fake_hub, Path(fake_hub_env["MODELIMPORT_CACHE_DIR"]))
    fake_hub.reset_counts()
    run = run_cli("--library", tmp_path / "lib", "import", files["encoder"], "--yes", "--json",
                  env=fake_hub_env)
    assert run.code == 0, run.stderr
    [result] = run.json["results"]
    assert (result["trust_level"], result["repo_id"]) == (
        "verified", "Comfy-Org/Wan_2.1_ComfyUI_repackaged")
    assert fake_hub.counts["search"] == 0 and fake_hub.counts["model_info"] == 0


def test_one_name_and_size_in_two_repos_is_no_high_confidence_claim_until_the_hash(
    tmp_path: Path, fake_hub: FakeHub, fake_hub_env: dict[str, str]
):
    """A re-upload of the same name and size with other bytes: the lookup cannot tell which
    repo holds these bytes, so it says Low confidence; the import's hash picks the right one."""
    path, data = _file(tmp_path / "dl", "detail_slider.safetensors", b"\x05")
    other = bytearray(data)
    other[-1] ^= 0xFF
    fake_hub.add_repo("Comfy-Org/loras", {path.name: bytes(other)}, downloads=1000)
    fake_hub.add_repo("someone/loras", {path.name: data}, downloads=3)
    cache = Path(fake_hub_env["MODELIMPORT_CACHE_DIR"])
    _build(fake_hub, cache)
    fake_hub.reset_counts()
    looked = run_cli("lookup", path, "--json", env=fake_hub_env)
    assert looked.code == 0, looked.stderr
    [item] = looked.json["results"]
    assert (item["trust"], item["match_method"]) == ("low_confidence", "filename_exact")
    assert {c["repo_id"] for c in item["candidates"]} >= {"Comfy-Org/loras", "someone/loras"}
    assert fake_hub.counts["model_info"] == 0  # both listings came from the index
    verified = run_cli("lookup", path, "--verify", "--json", env=fake_hub_env)
    assert verified.json["results"][0]["repo_id"] == "someone/loras"
    assert verified.json["results"][0]["trust"] == "verified"
    env = {**fake_hub_env, "HF_HUB_OFFLINE": "1"}
    run = run_cli("--library", tmp_path / "lib", "import", path, "--yes", "--json", env=env)
    [result] = run.json["results"]
    assert (result["trust_level"], result["repo_id"]) == ("verified", "someone/loras")


def test_a_hostile_or_foreign_index_is_an_empty_index(
    tmp_path: Path, fake_hub: FakeHub, fake_hub_env: dict[str, str]
):
    files = _world(fake_hub, tmp_path / "dl")
    cache = Path(fake_hub_env["MODELIMPORT_CACHE_DIR"])
    _build(fake_hub, cache)
    db = sqlite3.connect(cache / "publisher-index.sqlite")
    with db:  # an edited listing: a path out of the repo, a sha256 that is no sha256
        db.execute(
            "UPDATE repos SET listing = ? WHERE repo_id = 'someone/fav_models'",
            (json.dumps({"id": "someone/fav_models", "siblings": [
                {"rfilename": "../../etc/passwd", "size": 1},
                {"rfilename": "upscalers/4xNomos8kSCHAT-L.safetensors",
                 "size": files["upscaler"].stat().st_size, "lfs": {"sha256": "nope"}}]}),),
        )
    db.close()
    index = open_index(fake_hub.url, cache)
    assert index is not None
    listing = index.listing("someone/fav_models")
    assert listing is not None
    assert [(f.path, f.sha256) for f in listing.files] == [
        ("upscalers/4xNomos8kSCHAT-L.safetensors", None)]
    index.close()
    # Built against another Hub: not this one's index.
    assert open_index("http://127.0.0.1:1", cache) is None
    # Not a database at all: imports go on without it.
    (cache / "publisher-index.sqlite").write_bytes(b"garbage" * 100)
    env = {**fake_hub_env, "HF_HUB_OFFLINE": "1"}
    run = run_cli("--library", tmp_path / "lib", "import", files["vae"], "--yes", "--json",
                  env=env)
    assert run.code == 0, run.stderr
    assert run.json["results"][0]["status"] == "imported"


def test_index_commands_build_and_describe_the_index(
    tmp_path: Path, fake_hub: FakeHub, fake_hub_env: dict[str, str]
):
    _world(fake_hub, tmp_path / "dl")
    env = {**fake_hub_env, "MODELIMPORT_PUBLISHERS": "Comfy-Org,someone"}
    built = run_cli("index", "update", "--json", env=env)
    assert built.code == 0, built.stderr
    assert built.json["repos_listed"] == 3 and built.json["index"]["files"] == 6
    status = run_cli("index", "status", "--json", env=env)
    assert status.code == 0, status.stderr
    assert status.json["index"]["repos"] == 3
    assert [p["name"] for p in status.json["default_publishers"]] == ["Comfy-Org", "someone"]
    offline = run_cli("index", "update", "--offline", env=env)
    assert offline.code == 2 and "without --offline" in offline.stderr


def test_an_online_import_refreshes_an_index_older_than_a_week_and_only_then(
    tmp_path: Path, fake_hub: FakeHub, fake_hub_env: dict[str, str]
):
    files = _world(fake_hub, tmp_path / "dl")
    cache = Path(fake_hub_env["MODELIMPORT_CACHE_DIR"])
    _build(fake_hub, cache)
    env = {**fake_hub_env, "MODELIMPORT_PUBLISHERS": "Comfy-Org,someone"}
    fake_hub.reset_counts()
    fresh = run_cli("--library", tmp_path / "lib", "import", files["vae"], "--yes", env=env)
    assert fresh.code == 0, fresh.stderr
    assert fake_hub.counts["author_list"] == 0 and "publisher index" not in fresh.stderr
    db = sqlite3.connect(cache / "publisher-index.sqlite")
    with db:
        db.execute("UPDATE publishers SET updated_at = updated_at - 8 * 86400")
    db.close()
    fake_hub.repos["someone/fav_models"].last_modified = "2025-06-01T00:00:00.000Z"
    fake_hub.reset_counts()
    aged = run_cli("--library", tmp_path / "lib", "import", files["upscaler"], "--yes", env=env)
    assert aged.code == 0, aged.stderr
    assert "Refreshed the publisher index: 1 repos listed, 2 unchanged" in aged.stderr
    assert fake_hub.counts["author_list"] == 2
    index = open_index(fake_hub.url, cache)
    assert index is not None
    stats = index.stats()
    index.close()
    assert stats.age_s is not None and stats.age_s < 3600


def test_an_index_planted_as_a_link_is_never_written_through(
    tmp_path: Path, fake_hub: FakeHub, fake_hub_env: dict[str, str]
):
    """publisher-index.sqlite as a link to another program's database: update wrote its
    tables into that database (and a dangling link made a file wherever it pointed)."""
    _world(fake_hub, tmp_path / "dl")
    cache = Path(fake_hub_env["MODELIMPORT_CACHE_DIR"])
    cache.mkdir(parents=True, exist_ok=True)
    other = tmp_path / "other-app" / "places.sqlite"
    other.parent.mkdir()
    db = sqlite3.connect(other)
    with db:
        db.execute("CREATE TABLE bookmarks (url TEXT)")
    db.close()
    before = other.read_bytes()
    (cache / "publisher-index.sqlite").symlink_to(other)
    env = {**fake_hub_env, "MODELIMPORT_PUBLISHERS": "Comfy-Org,someone"}

    run = run_cli("index", "update", env=env)

    assert run.code == 1 and "is a link" in run.stderr and "Internal error" not in run.stderr
    assert other.read_bytes() == before
    (cache / "publisher-index.sqlite").unlink()
    (cache / "publisher-index.sqlite").symlink_to(tmp_path / "nowhere.sqlite")
    assert run_cli("index", "update", env=env).code != 0
    assert not (tmp_path / "nowhere.sqlite").exists()
