"""What a person may change in the import review, before anything is copied.

The review is a front end's business (the CLI asks on a terminal); what each answer does to
the plan is decided here, so any front end gets the same behaviour.

Invariants:
- Nothing here touches the library or the index: the plan changes, the disk does not.
- An edited model is recorded with match_source "manual" (so retry-pending and rescan leave
  it alone), and each edited field comes from the person ("user" in field_sources, above
  anything the file or the Hub says).
- A skipped model is not imported and is reported with status "skipped".
- Every model keeps the number it was first shown with (`ReviewItems`): skipping item 3
  never makes item 6 the fifth, and a skipped item can be taken back under its number.
- `destination_of` names the model id the import would use now; two models of one plan
  that would collide get the suffixes the commit would give them.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from modelimport.apps.layouts import model_types_named
from modelimport.errors import UsageError
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


# `3`, `1-5`, `3,7,9`, `1-5, 9`: item numbers and ranges, separated by commas or spaces.
NUMBERS = re.compile(r"\s*\d+\s*(-\s*\d+\s*)?([,\s]\s*\d+\s*(-\s*\d+\s*)?)*")


@dataclass
class ReviewItems:
    """The plan's models under the numbers the review showed first. Skipping takes a model
    out of `plan.models` at once (what is shown and counted is what would be imported);
    `settle_skipped` records the skipped ones as results when the person confirms."""

    plan: ImportPlan
    numbered: list[PlannedModel] = field(default_factory=list)
    skipped: set[int] = field(default_factory=set)

    def __post_init__(self) -> None:
        if not self.numbered:
            self.numbered = list(self.plan.models)

    def planned_numbers(self) -> list[int]:
        return [n for n in range(1, len(self.numbered) + 1) if n not in self.skipped]

    def model(self, number: int) -> PlannedModel:
        return self.numbered[number - 1]

    def select(self, text: str) -> list[int]:
        """The item numbers `text` names: numbers and ranges (`3`, `1-5`, `3,7,9`), or a
        model type of this plan (`lora`; `type lora`; an app's folder name, `loras`).
        Anything else raises UsageError saying what may be given."""
        text = re.sub(r"^type[:\s]\s*", "", text.strip(), flags=re.IGNORECASE)
        if not text:
            raise UsageError(self._what_to_give(""))
        if NUMBERS.fullmatch(text):
            numbers: list[int] = []
            for part in re.split(r"[,\s]+", re.sub(r"\s*-\s*", "-", text.strip())):
                first, _, last = part.partition("-")
                low, high = int(first), int(last or first)
                if not 1 <= low <= high <= len(self.numbered):
                    raise UsageError(
                        f"{part} is not a range of items from 1 to {len(self.numbered)}."
                    )
                numbers.extend(range(low, high + 1))
            return sorted(set(numbers))
        types = model_types_named(text)
        chosen = [n for n, m in enumerate(self.numbered, 1) if m.model_type in types]
        if not chosen:
            raise UsageError(self._what_to_give(text))
        return chosen

    def _what_to_give(self, text: str) -> str:
        present = ", ".join(sorted({m.model_type for m in self.numbered}))
        start = f"No item or model type is called {text!r}; give" if text else "Give"
        return f"{start} item numbers (3, 1-5, 3,7,9) or a model type of this plan ({present})."

    def skip(self, numbers: Iterable[int]) -> list[int]:
        """Skip these items; returns the ones that were not skipped already."""
        newly = [n for n in numbers if n not in self.skipped]
        self.skipped.update(newly)
        self._follow()
        return newly

    def take_back(self, numbers: Iterable[int]) -> list[int]:
        """Import these skipped items after all; returns the ones that were skipped."""
        back = [n for n in numbers if n in self.skipped]
        self.skipped.difference_update(back)
        self._follow()
        return back

    def _follow(self) -> None:
        self.plan.models[:] = [self.model(n) for n in self.planned_numbers()]

    def settle_skipped(self) -> None:
        for number in sorted(self.skipped):
            skip_result(self.plan, self.model(number))


def skip_result(plan: ImportPlan, planned: PlannedModel) -> None:
    plan.settled.append(
        ItemResult(SKIPPED, planned.sources, error="skipped in the review",
                   details=bundle_details(planned.group))
    )


def type_summary(models: Iterable[PlannedModel]) -> list[tuple[str, int, int]]:
    """(model type, models, bytes) per type, the most models first."""
    counts: dict[str, list[int]] = {}
    for m in models:
        entry = counts.setdefault(m.model_type, [0, 0])
        entry[0] += 1
        entry[1] += m.total_size
    return sorted(((t, c, b) for t, (c, b) in counts.items()), key=lambda x: (-x[1], x[0]))


def number_ranges(numbers: Iterable[int]) -> str:
    """`1-5, 9`: sorted numbers as the ranges a person would type them."""
    spans: list[list[int]] = []
    for n in sorted(numbers):
        if spans and n == spans[-1][1] + 1:
            spans[-1][1] = n
        else:
            spans.append([n, n])
    return ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in spans)


def destination_of(plan: ImportPlan, library: Library, db: sqlite3.Connection) -> list[str]:
    """The model id each planned model would get now, in plan order (every one of them:
    an id taken by an earlier model of the plan moves a later one to a suffix)."""
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
