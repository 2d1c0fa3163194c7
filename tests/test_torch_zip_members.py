"""Which data.pkl torch.load runs: PyTorchStreamReader reads `<folder of the first entry>/
data.pkl` (miniz matches it case-insensitively), so the scan must judge that one pickle and
refuse an archive holding others it might have judged instead."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest
from factories import evil_pickle_bytes, torch_state_dict_pickle

from modelimport.errors import InvalidModelFile
from modelimport.formats import inspect_file

GOOD = torch_state_dict_pickle({"w": ("F32", [4])})


def _zip(path: Path, members: list[tuple[str, bytes]]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for member, data in members:
            zf.writestr(member, data)
    return path


@pytest.mark.parametrize("members", [
    # torch reads archive/data.pkl (the first entry's folder); a root data.pkl was scanned
    [("archive/data.pkl", evil_pickle_bytes()), ("data.pkl", GOOD),
     ("archive/data/0", b"\0" * 16), ("archive/version", b"3\n")],
    # torch reads evil/data.pkl; good/data.pkl came first among the data.pkl files
    [("evil/version", b"3\n"), ("good/data.pkl", GOOD), ("evil/data.pkl", evil_pickle_bytes()),
     ("evil/data/0", b"\0" * 16)],
    # the same name twice, and a name differing only in case (miniz finds either)
    [("archive/data.pkl", GOOD), ("archive/data.pkl", evil_pickle_bytes())],
    [("archive/data.pkl", GOOD), ("archive/DATA.pkl", evil_pickle_bytes())],
    # TorchScript: torch.load hands the archive to torch.jit.load, which reads constants.pkl
    [("archive/data.pkl", GOOD), ("archive/constants.pkl", evil_pickle_bytes())],
], ids=["root-data-pkl", "other-folder-first", "duplicate", "case", "constants"])
def test_a_pickle_beside_the_one_torch_reads_is_refused(tmp_path: Path, members):
    path = _zip(tmp_path / "m.pt", members)
    with pytest.raises(InvalidModelFile, match="torch.load would read") as refused:
        inspect_file(path)
    assert "\n" not in str(refused.value)


def test_the_data_pkl_in_the_first_entrys_folder_is_the_one_scanned(tmp_path: Path):
    path = _zip(tmp_path / "m.pt", [("model/version", b"3\n"), ("model/data.pkl", GOOD),
                                     ("model/data/0", b"\0" * 16)])
    facts = inspect_file(path)
    assert facts.details["pickle_member"] == "model/data.pkl"
    assert facts.details["pickle_scan"]["verdict"] == "safe"
