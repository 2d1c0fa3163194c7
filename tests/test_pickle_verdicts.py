"""Pickles judged fairly, through the real CLI: refused only for what runs code on load.

The checkpoints are real torch-zip archives (archive/data.pkl, data/N, version) whose data.pkl
is written opcode by opcode in the layouts PyTorch and PyTorch Lightning write.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli import library_files, run_cli
from factories import (
    evil_pickle_bytes,
    lightning_checkpoint_pickle,
    make_torch_zip,
    torch_state_dict_pickle,
)

UNET = "model.diffusion_model."
# The SD 1.x layout: UNet, CLIP-L text encoder, VAE, all under state_dict.
SD15_TENSORS = {
    f"{UNET}input_blocks.0.0.weight": ("F32", [320, 4, 3, 3]),
    f"{UNET}input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight": ("F32", [320, 768]),
    "cond_stage_model.transformer.text_model.embeddings.token_embedding.weight":
        ("F32", [49408, 768]),
    "first_stage_model.encoder.down.0.block.0.conv1.weight": ("F32", [128, 128, 3, 3]),
    "first_stage_model.quant_conv.weight": ("F32", [8, 8, 1, 1]),
}
MODEL_CHECKPOINT = "pytorch_lightning.callbacks.model_checkpoint.ModelCheckpoint"
# What an SD 1.x checkpoint needs beyond weights_only=True (torch 2.6 refuses its numpy
# scalars too): the numpy globals of the callback's scores, and the callback class.
SD15_NEEDS = ["numpy.core.multiarray.scalar", "numpy.dtype", MODEL_CHECKPOINT]


def lightning_ckpt(folder: Path, name: str = "sd-v1-4.ckpt") -> Path:
    return make_torch_zip(
        folder / name, SD15_TENSORS, pickle_bytes=lightning_checkpoint_pickle(SD15_TENSORS)
    )


def test_sd15_lightning_checkpoint_is_imported_and_names_the_class_it_needs(tmp_path: Path):
    path = lightning_ckpt(tmp_path / "dl")
    lib = tmp_path / "lib"
    run = run_cli("--library", lib, "import", path, "--yes", "--json")
    assert run.code == 0, run.stderr
    [result] = run.json["results"]
    assert result["status"] == "imported", result
    meta = json.loads((lib / result["model_id"] / "metadata.json").read_text())
    assert (meta["model_type"], meta["family"]) == ("checkpoint", "sd15")
    assert meta["unsafe_pickle"] is False
    assert meta["pickle_needs_classes"] == SD15_NEEDS
    scan = meta["file_says"]["pickle_scan"]
    assert scan["verdict"] == "needs_classes" and scan["dangerous"] == scan["unknown"] == []
    assert scan["loader_packages"] == ["numpy", "pytorch-lightning"]
    # _codecs.encode is what weights_only=True allows: not a "needed class".
    assert "_codecs.encode" in scan["globals"]
    # The run says it too, not only the record: in --json and in the line a pipe reads.
    assert result["pickle_needs_classes"] == SD15_NEEDS
    again = run_cli("--library", tmp_path / "lib2", "import", path, "--yes", "--offline")
    assert f"Flagged pickle: needs {', '.join(SD15_NEEDS)}" in again.stdout, again.stdout


def test_lookup_shows_the_pickle_verdict(tmp_path: Path):
    path = lightning_ckpt(tmp_path / "dl", "v1-5-pruned-emaonly.ckpt")
    run = run_cli("lookup", path)
    assert run.code == 0, run.stderr
    assert f"a loader needs {', '.join(SD15_NEEDS)}" in run.stdout.replace("\n  ", " ")
    run = run_cli("lookup", path, "--json")
    assert run.json["results"][0]["file"]["pickle"]["verdict"] == "needs_classes"

    plain = make_torch_zip(tmp_path / "plain.pt", SD15_TENSORS)
    assert "Pickle: a plain state dict" in run_cli("lookup", plain).stdout

    evil = make_torch_zip(tmp_path / "evil.ckpt", pickle_bytes=evil_pickle_bytes())
    out = run_cli("lookup", evil).stdout
    assert "Pickle: UNSAFE: os.system would run code when loaded" in out


@pytest.mark.parametrize("where", ["raw", "zip", "inside-lightning"])
def test_os_system_pickle_is_refused_and_nothing_is_written(tmp_path: Path, where: str):
    folder = tmp_path / "dl"
    folder.mkdir()
    if where == "raw":
        path = folder / "model.ckpt"
        path.write_bytes(evil_pickle_bytes())
    elif where == "zip":
        path = make_torch_zip(folder / "model.ckpt", pickle_bytes=evil_pickle_bytes())
    else:  # a Lightning checkpoint followed by a payload in the same data.pkl's second pickle
        body = lightning_checkpoint_pickle(SD15_TENSORS)
        path = folder / "model.ckpt"
        path.write_bytes(body + evil_pickle_bytes())
    lib = tmp_path / "lib"
    run = run_cli("--library", lib, "import", path, "--yes", "--json")
    assert run.code == 1, run.stderr
    [result] = run.json["results"]
    assert result["status"] == "rejected"
    assert "would run code when loaded (os.system)" in result["error"]
    assert "--allow-unsafe-pickle" in result["error"]
    assert library_files(lib) == []

    run = run_cli("--library", lib, "import", path, "--yes", "--json", "--allow-unsafe-pickle")
    assert run.code == 0, run.stderr
    meta_path = lib / run.json["results"][0]["model_id"] / "metadata.json"
    meta = json.loads(meta_path.read_text())
    assert meta["unsafe_pickle"] is True
    assert "os.system" in meta["file_says"]["pickle_scan"]["dangerous"]


def test_plain_state_dict_needs_no_classes(tmp_path: Path):
    path = make_torch_zip(tmp_path / "dl" / "unet.pt", SD15_TENSORS,
                          pickle_bytes=torch_state_dict_pickle(SD15_TENSORS, wrap="state_dict"))
    lib = tmp_path / "lib"
    run = run_cli("--library", lib, "import", path, "--yes", "--json")
    assert run.code == 0, run.stderr
    meta = json.loads((lib / run.json["results"][0]["model_id"] / "metadata.json").read_text())
    assert meta["pickle_needs_classes"] == []
    assert meta["file_says"]["pickle_scan"]["verdict"] == "safe"


def test_the_lightning_factory_writes_a_pickle_python_can_read(tmp_path: Path):
    # The factory's bytes must be what Lightning writes, not just what our scanner accepts:
    # Python's own unpickler reads them, with every global replaced by an inert stub.
    import io
    import pickle

    class Stub:
        def __init__(self, *args: object) -> None:
            self.args = args

        def __setstate__(self, state: object) -> None:
            self.state = state

    class StubUnpickler(pickle.Unpickler):
        seen: list[str] = []

        def find_class(self, module: str, name: str) -> type:
            self.seen.append(f"{module}.{name}")
            if (module, name) == ("collections", "OrderedDict"):
                return dict  # the state dict itself: filled by SETITEMS
            return type(name, (Stub,), {})

        def persistent_load(self, pid: object) -> object:
            return pid

    reader = StubUnpickler(io.BytesIO(lightning_checkpoint_pickle(SD15_TENSORS)))
    checkpoint = reader.load()
    assert set(checkpoint) == {"epoch", "global_step", "pytorch-lightning_version",
                               "state_dict", "callbacks"}
    [callback_class] = checkpoint["callbacks"]
    assert callback_class.__name__ == "ModelCheckpoint"
    assert set(checkpoint["state_dict"]) == set(SD15_TENSORS)
    assert MODEL_CHECKPOINT in reader.seen


def test_an_unsafe_pickle_imported_on_purpose_stays_flagged_in_show(tmp_path: Path):
    path = make_torch_zip(tmp_path / "evil.ckpt", pickle_bytes=evil_pickle_bytes())
    lib = tmp_path / "lib"
    run = run_cli("--library", lib, "import", path, "--yes", "--json", "--allow-unsafe-pickle")
    assert run.code == 0, run.stderr
    [result] = run.json["results"]
    assert result["unsafe_pickle"] is True
    line = run_cli("--library", tmp_path / "lib2", "import", path, "--yes", "--offline",
                   "--allow-unsafe-pickle").stdout  # fmt: skip
    assert "Flagged pickle: UNSAFE, would run code when loaded" in line, line
    shown = run_cli("--library", lib, "show", result["model_id"])
    assert "pickle: UNSAFE, would run code when loaded (os.system)" in shown.stdout, shown.stdout
