"""What a person may change in the import review, before anything is copied.

The review is a front end's business (the CLI asks on a terminal); what each answer does to
the plan is decided here, so any front end gets the same behaviour.

Invariants:
- Nothing here touches the library or the index: the plan changes, the disk does not.
- An edited model is recorded with match_source "manual" (so retry-pending and rescan leave
  it alone), and each edited field comes from the person ("user" in field_sources, above
  anything the file or the Hub says).
- A skipped model is not imported and is reported with status "skipped".
- `destination_of` names the model id the import would use now; two models of one plan
  that would collide get the suffixes the commit would give them.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from modelimport.importer.pipeline import (
    SKIPPED,
    ImportPlan,
    ItemResult,
    PlannedModel,
    bundle_details,
    slug_for,
)
from modelimport.library.edits import EDITABLE_FIELDS, normalise_edit
from modelimport.library.ids import unique_model_id
from modelimport.library.layout import Library


def current_value(planned: PlannedModel, field: str) -> Any:
    key = EDITABLE_FIELDS[field].record_key
    if key in planned.user_edits:
        return planned.user_edits[key]
    return {
        "cleaned_name": planned.name,
        "model_type": planned.model_type,
        "family": planned.family,
        "subtype": (planned.lookup.metadata or {}).get("subtype") if planned.lookup else None,
        "tags": [],
        "notes": "",
    }.get(key)


def edit_model(planned: PlannedModel, field: str, value: str) -> None:
    """Set `field` of a planned model as the person typed it; the model becomes manual."""
    key = EDITABLE_FIELDS[field].record_key if field in EDITABLE_FIELDS else field
    planned.user_edits[key] = normalise_edit(field, value)
    if key == "cleaned_name":
        planned.name = planned.user_edits[key]
    elif key == "model_type":
        planned.model_type = planned.user_edits[key]
    elif key == "family":
        planned.family = planned.user_edits[key]


def skip_model(plan: ImportPlan, planned: PlannedModel) -> None:
    plan.models.remove(planned)
    plan.settled.append(
        ItemResult(SKIPPED, planned.sources, error="skipped in the review",
                   details=bundle_details(planned.group))
    )


def destination_of(plan: ImportPlan, library: Library, db: sqlite3.Connection) -> list[str]:
    """The model id each planned model would get now, in plan order."""
    taken: set[str] = set()
    ids = []
    for planned in plan.models:
        record = {
            "cleaned_name": planned.user_edits.get("cleaned_name") or planned.name,
            "precision": planned.probe.precision,
        }
        model_id = unique_model_id(
            library,
            db,
            planned.user_edits.get("model_type") or planned.model_type,
            planned.user_edits.get("family") or planned.family,
            slug_for(planned, record),
            also_taken=taken,
        )
        taken.add(model_id)
        ids.append(model_id)
    return ids
