"""The Hub's identity of a bundle: found by its folder name and config.json `_name_or_path`,
verified by the hashes of its weight files, each compared with the repo file at the same
relative path (a diffusers pipeline has one `diffusion_pytorch_model.safetensors` per
component). The real huggingface_hub client against the fake Hub."""

from __future__ import annotations

import hashlib

from fakehub import FakeHub

from modelimport.identify.hub import (
    HubSession,
    LocalFile,
    LookupRequest,
    TrustLevel,
    settle_verification,
)

UNET = b"unet weights " * 64
VAE = b"vae weights! " * 64  # the same size as the unet: only the path tells them apart
REPO = "stabilityai/stable-diffusion-xl-base-1.0"
WEIGHTS = {
    "unet/diffusion_pytorch_model.safetensors": UNET,
    "vae/diffusion_pytorch_model.safetensors": VAE,
}


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _pipeline_repo(fake_hub: FakeHub) -> None:
    fake_hub.add_repo(
        REPO,
        {"model_index.json": b"{}", **WEIGHTS, "unet/config.json": b"{}"},
        downloads=500,
        pipeline_tag="text-to-image",
    )


def _request(folder: str, embedded: tuple[str, ...] = ()) -> LookupRequest:
    files = tuple(LocalFile(name, len(data)) for name, data in WEIGHTS.items())
    return LookupRequest("diffusion_pytorch_model", files, folder, embedded)


def test_a_pipeline_is_found_by_its_name_or_path_and_each_weight_matches_its_own_path(
    fake_hub: FakeHub,
):
    _pipeline_repo(fake_hub)
    # A folder name that finds nothing; the config's `_name_or_path` names the repo.
    result = HubSession().identify(_request("my-renders-model", embedded=(REPO,)))
    assert (result.trust, result.repo_id) == (TrustLevel.HIGH, REPO)
    assert result.matched_files == {name: name for name in WEIGHTS}
    assert result.expected_sha256 == {name: _sha(data) for name, data in WEIGHTS.items()}

    verified = settle_verification(result, {n: _sha(d) for n, d in WEIGHTS.items()})
    assert verified.trust is TrustLevel.VERIFIED
    swapped = {n: _sha(d) for n, d in zip(WEIGHTS, reversed(WEIGHTS.values()), strict=True)}
    assert settle_verification(result, swapped).trust is TrustLevel.MODIFIED


def test_a_pipeline_is_found_by_its_folder_name(fake_hub: FakeHub):
    _pipeline_repo(fake_hub)
    result = HubSession().identify(_request("stable-diffusion-xl-base-1.0"))
    assert (result.trust, result.repo_id) == (TrustLevel.HIGH, REPO)
    assert result.matched_files == {name: name for name in WEIGHTS}


def test_a_local_path_in_name_or_path_is_not_a_repo(fake_hub: FakeHub):
    _pipeline_repo(fake_hub)
    result = HubSession().identify(_request("x", embedded=("/home/me/models/sdxl",)))
    assert result.trust is TrustLevel.NONE
    assert "model_info" not in fake_hub.counts
