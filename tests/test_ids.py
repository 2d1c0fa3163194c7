"""Model ids stay unique where case does not count: ids that differ only in case (after
Unicode case folding) would be one folder on APFS, NTFS and exFAT, so they are never both
given, on any disk."""

from __future__ import annotations

from pathlib import Path

from modelimport.library import index
from modelimport.library.ids import unique_model_id
from modelimport.library.layout import Library


def test_an_id_differing_only_in_case_is_taken(tmp_path: Path) -> None:
    library = Library(tmp_path / "lib").ensure()
    db = index.connect(library.index_path)
    index.upsert_model(db, "lora/sdxl/straße", {"model_type": "lora", "family": "sdxl"})
    # In the index only (its folder gone): still taken, folded.
    assert unique_model_id(library, db, "lora", "sdxl", "STRASSE") == "lora/sdxl/STRASSE-2"
    # On disk only (the index rebuilt later), in the plan, and the same name exactly.
    (library.root / "lora/sdxl/Detail").mkdir(parents=True)
    assert unique_model_id(library, db, "lora", "sdxl", "detail") == "lora/sdxl/detail-2"
    promised = {"lora/sdxl/tweak"}
    assert unique_model_id(library, db, "lora", "sdxl", "TWEAK", promised) == "lora/sdxl/TWEAK-2"
    assert unique_model_id(library, db, "lora", "sd15", "detail") == "lora/sd15/detail"
