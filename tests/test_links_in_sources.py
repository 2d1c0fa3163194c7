"""A link met while walking a folder the person named is followed only inside that folder
(or, for the Hugging Face cache, into its repo's blobs/): a downloaded model folder whose
`tokenizer/special_tokens_map.json` is a link to ~/.ssh/id_rsa must not copy the key into
the library. Real folders, real links, the real CLI."""

from __future__ import annotations

from pathlib import Path

from cli import run_cli
from factories import make_diffusers_sdxl, make_lora_with_sidecars
from test_bundles import hf_cache_snapshot

SECRET = b"-----BEGIN OPENSSH PRIVATE KEY----- not for the library\n"


def _private(tmp_path: Path) -> Path:
    private = tmp_path / "home" / ".ssh"
    private.mkdir(parents=True)
    (private / "id_rsa").write_bytes(SECRET)
    (private / "id_rsa").chmod(0o600)
    return private


def _import(lib: Path, *args: Path) -> dict:
    run = run_cli("--library", lib, "import", *args, "--yes", "--json", "--offline")
    assert run.code == 0, run.stderr + run.stdout
    return run.json


def _library_holds_secret(lib: Path) -> list[Path]:
    return [p for p in lib.rglob("*") if p.is_file() and SECRET in p.read_bytes()]


def test_links_out_of_a_named_folder_are_not_followed(tmp_path: Path):
    private = _private(tmp_path)
    dl = tmp_path / "dl"
    make_diffusers_sdxl(dl / "sdxl-base")
    tokens = dl / "sdxl-base" / "tokenizer" / "special_tokens_map.json"
    tokens.unlink()
    tokens.symlink_to(private / "id_rsa")  # a file of a folder model
    (dl / "sdxl-base" / "unet" / "extra").symlink_to(private)  # a folder of a folder model
    make_lora_with_sidecars(dl / "loras")
    (dl / "loras" / "add_detail.txt").symlink_to(private / "id_rsa")  # a sidecar
    lib = tmp_path / "lib"

    results = _import(lib, dl)["results"]

    assert _library_holds_secret(lib) == []
    imported = {r["model_id"] for r in results if r["status"] == "imported"}
    assert len(imported) == 2, results  # both models, without what the links led to
    skipped = {Path(r["sources"][0]).name for r in results if r["status"] == "skipped"}
    assert "add_detail.txt" in skipped
    assert (private / "id_rsa").read_bytes() == SECRET


def test_links_inside_the_named_folder_and_the_cache_blobs_are_followed(tmp_path: Path):
    dl = tmp_path / "dl"
    make_lora_with_sidecars(dl / "real")
    (dl / "linked").mkdir()
    (dl / "linked" / "style.safetensors").symlink_to(dl / "real" / "add_detail.safetensors")
    repo, snapshot = hf_cache_snapshot(tmp_path / "hub")
    lib = tmp_path / "lib"
    # the snapshot named directly: its links lead up into the repo's blobs/, outside it
    results = _import(lib, dl, snapshot)["results"]
    imported = sorted(r["model_id"] for r in results if r["status"] == "imported")
    # the link (walked first: linked/ < real/) is followed; the snapshot is whole
    assert imported == ["lora/sd15/style", "text_encoder/bert/all-minilm-l6-v2"], results
    [snap] = [r for r in results if r["model_id"].startswith("text_encoder")]
    assert len(snap["files"]) > 3


def test_a_planted_blobs_link_is_no_cache(tmp_path: Path):
    """models--x--y/blobs as a link to a private folder does not make links into it inside."""
    private = _private(tmp_path)
    repo = tmp_path / "dl" / "models--evil--model"
    snapshot = repo / "snapshots" / "abc"
    make_lora_with_sidecars(snapshot)
    (repo / "blobs").symlink_to(private)
    (snapshot / "add_detail.txt").symlink_to("../../blobs/id_rsa")
    lib = tmp_path / "lib"
    _import(lib, snapshot)
    assert _library_holds_secret(lib) == []


def test_a_named_models_sidecar_linked_outside_its_folder_stays_out(tmp_path: Path):
    private = _private(tmp_path)
    make_lora_with_sidecars(tmp_path / "dl")
    (tmp_path / "dl" / "add_detail.txt").symlink_to(private / "id_rsa")
    lib = tmp_path / "lib"
    [result] = _import(lib, tmp_path / "dl" / "add_detail.safetensors")["results"]
    assert result["status"] == "imported"
    assert _library_holds_secret(lib) == []
    assert "add_detail.civitai.info" in {f["name"] for f in result["files"]}
