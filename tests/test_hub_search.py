"""Finding the repo like a person would: queries, ranking, the catalog, the batch budget,
same-name files with other bytes and base models, against the fake Hub."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from cli import run_cli_here as run_cli  # in this process (tests/cli.py)
from factories import make_gguf, make_safetensors
from fakehub import FakeHub

from modelimport.identify.catalog import load_catalog
from modelimport.identify.hub import HubSession, LocalFile, TrustLevel, settle_verification
from modelimport.identify.hub.candidates import metadata_hints, name_queries, request_for


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def searched(hub: FakeHub) -> list[str]:
    return [
        parse_qs(urlsplit(path).query)["search"][0] for endpoint, path in hub.log
        if endpoint == "search"
    ]


def distractors(hub: FakeHub, words: list[str], n: int = 60) -> None:
    """Popular repos whose ids contain the words people search for, holding other files."""
    for i in range(n):
        word = words[i % len(words)]
        hub.add_repo(
            f"crowd{i}/{word}-remix-{i}", {f"{word}-remix-{i}.safetensors": (1000 + i, "e" * 64)},
            downloads=10_000_000 - i,
        )


def identify(name: str, size: int, *, folder: str | None = None, sha256: str | None = None,
             session: HubSession | None = None, **kw):
    request = request_for((LocalFile(name, size, sha256=sha256),), folder, **kw)
    return (session or HubSession()).identify(request)


# -- queries ----------------------------------------------------------------------------------


def test_queries_keep_the_names_own_separators_before_the_hubs():
    queries = name_queries("t5-v1_1-xxl-encoder-Q8_0.gguf")
    assert queries[:2] == ["t5-v1_1-xxl-encoder", "t5-v1-1-xxl-encoder"]


@pytest.mark.parametrize(
    ("name", "found_by"),
    [
        ("4x-UltraSharp.pth", "UltraSharp"),
        ("sd3.5_large_controlnet_blur.safetensors", "large-controlnet-blur"),
        ("Meta-Llama-3-8B-Instruct-Q4_K_M.gguf", "Llama-3-8B-Instruct"),
    ],
)
def test_leading_words_are_dropped_too(name: str, found_by: str):
    assert found_by in name_queries(name)


def test_single_distinctive_words_are_tried_common_ones_never():
    queries = name_queries("juggernautXL_v9Rdphoto2Lightning.safetensors")
    assert "juggernautXL" in queries
    assert not {"lora", "model", "instruct", "Lightning"} & set(name_queries("x-lora-model-7b"))


def test_names_inside_the_file_become_queries_and_base_models_are_kept_apart():
    hints, bases = metadata_hints(
        {
            "general.basename": "Mistral-Nemo",
            "general.size_label": "12B",
            "general.finetune": "Instruct",
            "general.base_model.0.repo_url": "https://huggingface.co/mistralai/Mistral-Nemo-Base-2407",
        }
    )
    assert hints[0] == "Mistral-Nemo-12B-Instruct" and "Mistral-Nemo" in hints
    assert bases == ("mistralai/Mistral-Nemo-Base-2407",)


# -- search against the fake Hub --------------------------------------------------------------


def test_original_separators_find_what_normalised_ones_miss(fake_hub: FakeHub):
    data = b"t5 q8" * 50
    fake_hub.add_repo("city96/t5-v1_1-xxl-encoder-gguf", {"t5-v1_1-xxl-encoder-Q8_0.gguf": data})
    distractors(fake_hub, ["t5-v1", "xxl-encoder"])
    result = identify("t5-v1_1-xxl-encoder-Q8_0.gguf", len(data))
    assert (result.trust, result.repo_id) == (TrustLevel.HIGH, "city96/t5-v1_1-xxl-encoder-gguf")
    assert fake_hub.total <= 4


def test_a_leading_word_is_dropped_when_the_whole_name_finds_nothing(fake_hub: FakeHub):
    data = b"blur" * 300
    repo = "someorg/stable-diffusion-3.5-medium-controlnet-blur"
    fake_hub.add_repo(repo, {"sd3.5_medium_controlnet_blur.safetensors": data}, downloads=900)
    distractors(fake_hub, ["controlnet", "medium", "blur"])
    result = identify("sd3.5_medium_controlnet_blur.safetensors", len(data))
    assert (result.trust, result.repo_id) == (TrustLevel.HIGH, repo)
    # `sd3.5` written out as its publisher spells it finds the repo the name does not.
    assert searched(fake_hub)[-1] == "stable-diffusion-3.5"
    assert fake_hub.total <= 4


def test_the_search_goes_on_until_a_repo_holds_the_file(fake_hub: FakeHub):
    """The first query finds repos, none holding the file: that is not the end."""
    data = b"ultra" * 100
    fake_hub.add_repo("4x-UltraSharp-fan/4x-UltraSharp-gallery", {"README.md": b"pictures"},
                      downloads=10**6)
    fake_hub.add_repo("lokCX/4x-Ultrasharp", {"4x-UltraSharp.pth": data}, downloads=10)
    result = identify("4x-UltraSharp.pth", len(data))
    assert (result.trust, result.repo_id) == (TrustLevel.HIGH, "lokCX/4x-Ultrasharp")


def test_hits_are_listed_by_how_much_of_the_name_they_spell_not_downloads(fake_hub: FakeHub):
    data = b"gguf" * 100
    name = "zephyr-7b-beta.Q4_K_S.gguf"
    fake_hub.add_repo("HuggingFaceH4/zephyr-7b-beta", {"model.safetensors": b"x"},
                      downloads=10**7)
    for i in range(30):
        fake_hub.add_repo(f"fan{i}/zephyr-7b-beta-lora-{i}", {"a.safetensors": b"y"},
                          downloads=10**6 - i)
    fake_hub.add_repo("TheBloke/zephyr-7B-beta-GGUF", {name: data}, downloads=5000)
    result = identify(name, len(data))
    assert result.repo_id == "TheBloke/zephyr-7B-beta-GGUF"
    assert fake_hub.counts["model_info"] <= 2


def test_generic_names_in_downloads_never_search_downloads(fake_hub: FakeHub):
    fake_hub.add_repo("someone/Downloads", {"diffusion_pytorch_model.safetensors": b"z" * 64})
    for name in ("diffusion_pytorch_model.safetensors", "pytorch_lora_weights.safetensors"):
        result = identify(name, 64, folder="Downloads")
        assert result.repo_id != "someone/Downloads"
    assert not any("download" in q.lower() for q in searched(fake_hub))


def test_a_generic_name_is_searched_by_its_probed_family_and_type(fake_hub: FakeHub):
    data = b"vae" * 100
    fake_hub.add_repo("stabilityai/sdxl-vae", {"diffusion_pytorch_model.safetensors": data})
    result = identify("diffusion_pytorch_model.safetensors", len(data), folder="Downloads",
                      model_type="vae", family="sdxl")
    assert (result.trust, result.repo_id) == (TrustLevel.HIGH, "stabilityai/sdxl-vae")
    assert searched(fake_hub) == ["sdxl-vae"]


# -- the catalog --------------------------------------------------------------------------------


def test_the_catalog_names_repos_no_search_could_find(fake_hub: FakeHub):
    data = b"sdxl" * 100
    repo = "stabilityai/stable-diffusion-xl-base-1.0"
    fake_hub.add_repo(repo, {"sd_xl_base_1.0.safetensors": data}, downloads=10)
    result = identify("sd_xl_base_1.0.safetensors", len(data))
    assert (result.trust, result.repo_id) == (TrustLevel.HIGH, repo)
    assert fake_hub.counts["search"] == 0 and fake_hub.counts["model_info"] == 1


def test_a_catalog_hit_is_only_a_candidate(fake_hub: FakeHub):
    """The catalog's repo does not hold a file of this size: the listing decides, not the
    catalog, and the repo is at most a modified version."""
    fake_hub.add_repo("comfyanonymous/flux_text_encoders", {"t5xxl_fp16.safetensors": b"a" * 99})
    result = identify("t5xxl_fp16.safetensors", 50)
    assert result.trust is not TrustLevel.HIGH and result.trust is not TrustLevel.VERIFIED


def test_every_catalog_entry_says_where_it_came_from():
    catalog = load_catalog()
    assert len(catalog) >= 100
    for entries in catalog.values():
        for entry in entries:
            assert entry.source.startswith("https://github.com/"), entry
            assert "/" in entry.repo_id and entry.path.endswith(entry.name)


# -- same name, other bytes ---------------------------------------------------------------------

MINE = b"the bytes I have " * 40
THEIRS = b"a requantised copy" * 40  # another file of the very same name...
THEIRS = THEIRS[: len(MINE)]  # ...and size


def _same_name_world(hub: FakeHub) -> None:
    name = "Mistral-7B-Instruct-v0.3-Q4_K_M.gguf"
    hub.add_repo("popular/Mistral-7B-Instruct-v0.3-GGUF", {name: THEIRS}, downloads=10**6)
    hub.add_repo("quiet/Mistral-7B-Instruct-v0.3-GGUF", {name: MINE}, downloads=10)


def test_same_name_other_bytes_picks_the_repo_holding_these_bytes(fake_hub: FakeHub):
    _same_name_world(fake_hub)
    name = "Mistral-7B-Instruct-v0.3-Q4_K_M.gguf"
    known = identify(name, len(MINE), sha256=sha(MINE))
    assert (known.trust, known.repo_id) == (
        TrustLevel.VERIFIED, "quiet/Mistral-7B-Instruct-v0.3-GGUF",
    )

    # Not hashed yet: two repos hold this name and size with other bytes, so neither is
    # high confidence; the copy stream's SHA256 then settles it on the right one.
    pending = identify(name, len(MINE), session=HubSession(refresh=True))
    assert pending.trust is TrustLevel.LOW and pending.pending_verification
    settled = settle_verification(pending, {name: sha(MINE)})
    assert (settled.trust, settled.repo_id) == (
        TrustLevel.VERIFIED, "quiet/Mistral-7B-Instruct-v0.3-GGUF",
    )
    other = settle_verification(pending, {name: sha(b"neither")})
    assert other.trust is TrustLevel.MODIFIED  # no candidate holds these bytes


def test_import_settles_same_name_other_bytes_on_the_holder(
    tmp_path: Path, fake_hub: FakeHub, fake_hub_env: dict[str, str]
):
    name = "Mistral-7B-Instruct-v0.3-Q4_K_M.gguf"
    path = make_gguf(tmp_path / "dl" / name, kv={"general.basename": "Mistral"})
    mine = path.read_bytes()
    fake_hub.add_repo("popular/Mistral-7B-Instruct-v0.3-GGUF",
                      {name: (len(mine), "f" * 64)}, downloads=10**6)
    fake_hub.add_repo("quiet/Mistral-7B-Instruct-v0.3-GGUF", {name: mine}, downloads=10)
    run = run_cli("--library", tmp_path / "lib", "import", path, "--yes", "--json",
                  env=fake_hub_env)
    assert run.code == 0, run.stderr
    [result] = run.json["results"]
    assert (result["trust_level"], result["repo_id"]) == (
        "verified", "quiet/Mistral-7B-Instruct-v0.3-GGUF",
    )


def test_a_base_model_named_inside_the_file_is_recorded_not_claimed(fake_hub: FakeHub):
    name = "Mistral-Nemo-Instruct-2407-Q4_K_M.gguf"
    data = b"nemo" * 100
    fake_hub.add_repo("mistralai/Mistral-Nemo-Instruct-2407", {"consolidated.safetensors": b"x"},
                      downloads=10**6)
    fake_hub.add_repo("bartowski/Mistral-Nemo-Instruct-2407-GGUF", {name: data}, downloads=50)
    metadata = {"general.base_model.0.repo_url":
                "https://huggingface.co/mistralai/Mistral-Nemo-Instruct-2407"}
    result = identify(name, len(data), metadata=metadata,
                      embedded_repos=("mistralai/Mistral-Nemo-Instruct-2407",))
    assert result.repo_id == "bartowski/Mistral-Nemo-Instruct-2407-GGUF"
    assert result.metadata["base_model"] == "mistralai/Mistral-Nemo-Instruct-2407"
    assert all(c.repo_id != "mistralai/Mistral-Nemo-Instruct-2407" for c in result.candidates)


# -- the batch budget -----------------------------------------------------------------------------


def test_a_batch_shares_searches_and_listings_and_averages_four_calls(fake_hub: FakeHub):
    quants = {f"Qwen2.5-7B-Instruct-{q}.gguf": bytes([i]) * (100 + i)
              for i, q in enumerate(["Q2_K", "Q3_K_M", "Q4_K_M", "Q5_K_M", "Q6_K", "Q8_0"])}
    fake_hub.add_repo("bartowski/Qwen2.5-7B-Instruct-GGUF", quants, downloads=100)
    distractors(fake_hub, ["Qwen2.5-7B", "Qwen2.5"])
    session = HubSession(refresh=True)  # no disk cache: only the session shares
    hard = ["unknown-thing-1.safetensors", "sd3.5_large_mystery_blur.safetensors"]
    for name in hard:
        identify(name, 7, session=session)
    for name, data in quants.items():
        result = identify(name, len(data), session=session)
        assert result.repo_id == "bartowski/Qwen2.5-7B-Instruct-GGUF"
    models = len(hard) + len(quants)
    assert fake_hub.total <= 4 * models
    listings = [path for endpoint, path in fake_hub.log if endpoint == "model_info"]
    assert len(listings) == len(set(listings))  # one listing per repo per batch


# -- the file's structure wins ------------------------------------------------------------------


def test_a_lora_stays_a_lora_after_a_verified_match_to_a_text_to_image_repo(
    tmp_path: Path, fake_hub: FakeHub, fake_hub_env: dict[str, str]
):
    tensors = {
        "lora_unet_input_blocks_4_1_transformer_blocks_0_attn2_to_k.lora_down.weight":
            ("F16", [8, 2048]),
        "lora_te1_text_model_encoder_layers_0_self_attn_q_proj.lora_down.weight": ("F16", [8, 768]),
    }
    path = make_safetensors(tmp_path / "dl" / "sdxl-pixel-art.safetensors", tensors)
    fake_hub.add_repo(
        "nerijs/sdxl-pixel-art", {path.name: path.read_bytes()},
        pipeline_tag="text-to-image", tags=["text-to-image", "stable-diffusion-xl"],
    )
    lib = tmp_path / "lib"
    run = run_cli("--library", lib, "import", path, "--yes", "--json", env=fake_hub_env)
    assert run.code == 0, run.stderr
    [result] = run.json["results"]
    assert result["trust_level"] == "verified" and result["repo_id"] == "nerijs/sdxl-pixel-art"
    assert result["model_id"].startswith("lora/sdxl/")
    meta = json.loads((lib / result["model_id"] / "metadata.json").read_text())
    assert meta["model_type"] == "lora" and meta["field_sources"]["model_type"] == "file"


def test_an_sd_vae_named_without_a_family_takes_it_from_a_match_not_the_file(
    tmp_path: Path, fake_hub: FakeHub, fake_hub_env: dict[str, str]
):
    tensors = {
        "encoder.down.0.block.0.conv1.weight": ("F32", [8, 8, 3, 3]),
        "decoder.conv_in.weight": ("F32", [8, 4, 3, 3]),
        "quant_conv.weight": ("F32", [8, 8, 1, 1]),
    }
    path = make_safetensors(tmp_path / "dl" / "linked_vae.safetensors", tensors)
    lib = tmp_path / "lib"
    run = run_cli("--library", lib, "import", path, "--yes", "--json", "--offline")
    assert run.code == 0, run.stderr
    [result] = run.json["results"]
    meta = json.loads((lib / result["model_id"] / "metadata.json").read_text())
    assert meta["model_type"] == "vae" and meta["field_sources"]["family"] != "file"


def test_import_records_the_base_model_the_file_names(
    tmp_path: Path, fake_hub: FakeHub, fake_hub_env: dict[str, str]
):
    name = "Mistral-Nemo-Instruct-2407-Q4_K_M.gguf"
    path = make_gguf(tmp_path / "dl" / name, kv={
        "general.base_model.count": 1,
        "general.base_model.0.repo_url": "https://huggingface.co/mistralai/Mistral-Nemo-Instruct-2407",
    })
    fake_hub.add_repo("mistralai/Mistral-Nemo-Instruct-2407", {"consolidated.safetensors": b"x"},
                      downloads=10**6)
    fake_hub.add_repo("bartowski/Mistral-Nemo-Instruct-2407-GGUF", {name: path.read_bytes()})
    lib = tmp_path / "lib"
    run = run_cli("--library", lib, "import", path, "--yes", "--json", env=fake_hub_env)
    assert run.code == 0, run.stderr
    [result] = run.json["results"]
    assert (result["trust_level"], result["repo_id"]) == (
        "verified", "bartowski/Mistral-Nemo-Instruct-2407-GGUF",
    )
    meta = json.loads((lib / result["model_id"] / "metadata.json").read_text())
    assert meta["base_model"] == "mistralai/Mistral-Nemo-Instruct-2407"


def test_a_local_catalog_file_replaces_the_shipped_one_and_a_broken_one_is_empty(
    tmp_path: Path, fake_hub: FakeHub, fake_hub_env: dict[str, str]
):
    path = make_safetensors(tmp_path / "dl" / "house_style_v3.safetensors")
    fake_hub.add_repo("studio/brand-assets", {"weights/house_style_v3.safetensors":
                                              path.read_bytes()})
    mine = tmp_path / "catalog.json"
    mine.write_text(json.dumps({
        "sources": {"ours": {"url": "https://example.org/our-list"}},
        "files": [{"name": path.name, "repo": "studio/brand-assets",
                   "path": "weights/house_style_v3.safetensors", "source": "ours"}],
    }))
    env = {**fake_hub_env, "MODELIMPORT_CATALOG": str(mine)}
    run = run_cli("lookup", path, "--json", env=env)
    assert run.code == 0, run.stderr
    [report] = run.json["results"]
    assert (report["repo_id"], report["trust"]) == ("studio/brand-assets", "high_confidence")
    assert fake_hub.counts["search"] == 0

    for broken in ('{"files": {"x": 1}, "sources": []}', "[1, 2]", "not json", '{"files": [7]}'):
        mine.write_text(broken)
        run = run_cli("lookup", path, "--json", env=env)
        assert run.code == 0, run.stderr
        assert run.json["results"][0]["repo_id"] is None


# -- queries like a person's (issue 18) -------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "repo", "path"),
    [
        # A name glued to its version, respelled by the repackager.
        ("wan2.2_t2v_high_noise_14B_fp8_scaled.safetensors", "Comfy-Org/Wan_2.2_ComfyUI_Repackaged",
         "split_files/diffusion_models/wan2.2_t2v_high_noise_14B_fp8_scaled.safetensors"),
        # The first two words in the name's own spelling, not the Hub's usual `-`.
        ("fooocus_inpaint_head.safetensors", "lllyasviel/fooocus_inpaint",
         "fooocus_inpaint_head.safetensors"),
        # CamelCase written with a hyphen in the repo id.
        ("OmniSR_X4.safetensors", "Acly/Omni-SR", "OmniSR_X4.safetensors"),
        # A family and its version, the rest of the name the repo never spells.
        ("ltx-2.3-22b-distilled-lora-384.safetensors", "Lightricks/LTX-2.3",
         "ltx-2.3-22b-distilled-lora-384.safetensors"),
        # A family abbreviation written out.
        ("sd_xl_offset_example-lora_1.0.safetensors",
         "stabilityai/stable-diffusion-xl-base-1.0", "sd_xl_offset_example-lora_1.0.safetensors"),
    ],
)
def test_a_person_s_spelling_finds_the_repo_the_file_name_does_not(
    fake_hub: FakeHub, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
    name: str, repo: str, path: str,
):
    empty = tmp_path / "empty-catalog.json"
    empty.write_text('{"sources": {}, "files": []}')
    monkeypatch.setenv("MODELIMPORT_CATALOG", str(empty))
    load_catalog.cache_clear()
    data = name.encode() * 40
    fake_hub.add_repo(repo, {path: data, "README.md": b"# card"}, downloads=5000)
    words = [w for w in name.replace(".", "_").replace("-", "_").split("_") if len(w) > 3]
    distractors(fake_hub, words[:3] or ["model"], n=30)
    try:
        result = identify(name, len(data))
    finally:
        load_catalog.cache_clear()
    assert (result.trust, result.repo_id) == (TrustLevel.HIGH, repo)
    assert fake_hub.total <= 4


# -- scoring that prefers the file's holder (issue 18) -----------------------------------------


def test_the_gguf_repo_holding_the_file_beats_the_popular_base_repo(fake_hub: FakeHub):
    """`FLUX.2-klein-4B` (the base model, most downloaded) holds no such file; the `-GGUF`
    repo that holds it by name and size is the match."""
    data = b"klein q4" * 64
    fake_hub.add_repo("black-forest-labs/FLUX.2-klein-4B",
                      {"flux-2-klein-4b.safetensors": b"base" * 99}, downloads=9_000_000)
    fake_hub.add_repo("unsloth/FLUX.2-klein-4B-GGUF",
                      {"flux-2-klein-4b-Q4_K_M.gguf": data}, downloads=20_000)
    distractors(fake_hub, ["klein", "FLUX.2"], n=20)
    result = identify("flux-2-klein-4b-Q4_K_M.gguf", len(data))
    assert (result.trust, result.repo_id) == (TrustLevel.HIGH, "unsloth/FLUX.2-klein-4B-GGUF")


def test_a_noise_repo_sharing_the_words_loses_to_the_repo_holding_the_name(fake_hub: FakeHub):
    data = b"inpaint" * 70
    fake_hub.add_repo("lllyasviel/fooocus_inpaint", {"inpaint_v26.fooocus.patch": b"p" * 10,
                                                     "fooocus_inpaint_head.safetensors": data},
                      downloads=3_000)
    fake_hub.add_repo("fan/fooocus-inpaint-head-collection",
                      {"gallery.safetensors": b"g" * 50}, downloads=5_000_000)
    result = identify("fooocus_inpaint_head.safetensors", len(data))
    assert (result.trust, result.repo_id) == (TrustLevel.HIGH, "lllyasviel/fooocus_inpaint")


def test_a_same_size_upload_of_other_bytes_keeps_the_search_going_to_the_exact_bytes(
    fake_hub: FakeHub,
):
    """With the SHA256 known (`lookup --verify`, retry-pending), a namesake with other bytes
    of the same size is no answer: the search goes on while the budget lasts and the repo
    holding these very bytes is Verified."""
    data = b"upscaler" * 80
    other = bytes(b ^ 1 for b in data)
    fake_hub.add_repo("reuploader/4x-NMKD-Siax", {"4x-NMKD-Siax.safetensors": other},
                      downloads=900_000)
    fake_hub.add_repo("gemasai/4x_NMKD-Siax_200k", {"4x-NMKD-Siax.safetensors": data},
                      downloads=800)
    result = identify("4x-NMKD-Siax.safetensors", len(data), sha256=sha(data))
    assert (result.trust, result.repo_id) == (TrustLevel.VERIFIED, "gemasai/4x_NMKD-Siax_200k")
