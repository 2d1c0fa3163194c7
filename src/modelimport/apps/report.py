"""What linking did, as the reports and `--json` say it: one change per link, the counts
per app, and the whole report of a sync."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from modelimport.apps.plan import DesiredLink
from modelimport.apps.serving import NoLinks

# Actions, as reports and --json name them.
CREATED, REPAIRED, REMOVED, ADOPTED, FORGOTTEN, SKIPPED, FAILED = (
    "created", "repaired", "removed", "adopted", "forgotten", "skipped", "failed",
)  # fmt: skip
CHANGES = (CREATED, REPAIRED, REMOVED, ADOPTED, FORGOTTEN)


@dataclass(frozen=True)
class LinkChange:
    action: str
    app: str
    model_id: str | None
    link_path: str
    target: str | None = None
    kind: str | None = None  # symlink | hardlink | junction, for links made
    reason: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "app": self.app,
            "model_id": self.model_id,
            "link_path": self.link_path,
            "target": self.target,
            "kind": self.kind,
            "reason": self.reason or None,
        }

    def sentence(self) -> str:
        text = f"{self.app}: {self.action} {self.link_path}"
        return f"{text} ({self.reason})" if self.reason else text


@dataclass
class AppCounts:
    ok: int = 0
    broken: int = 0  # ours, but dangling (its model gone), pointing elsewhere or replaced
    missing: int = 0  # should be there and is not
    conflicts: int = 0  # the path is taken by something that is not ours
    clashes: int = 0  # not linked: another model's link has the name (a split set)
    no_links: int = 0  # not linked: the app's folder takes no kind of link (exFAT, ...)


@dataclass
class SyncReport:
    dry_run: bool = False
    changes: list[LinkChange] = field(default_factory=list)
    counts: dict[str, AppCounts] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)  # e.g. an unreadable config file
    no_links: list[NoLinks] = field(default_factory=list)  # per app and model type
    configs: list[dict[str, str]] = field(default_factory=list)  # config files written

    def add(self, change: LinkChange) -> None:
        self.changes.append(change)

    def for_model(self, model_id: str) -> list[LinkChange]:
        return [c for c in self.changes if c.model_id == model_id]

    def count(self, action: str) -> int:
        return sum(1 for c in self.changes if c.action == action)

    def to_json(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "changes": [c.to_json() for c in self.changes],
            "summary": {a: self.count(a) for a in (*CHANGES, SKIPPED, FAILED)},
            "apps": {name: vars(c) for name, c in self.counts.items()},
            "problems": list(self.problems),
            "no_links": [n.to_json() for n in self.no_links],
            "configs": list(self.configs),
        }


def skip_change(link: DesiredLink, reason: str) -> LinkChange:
    return LinkChange(
        SKIPPED, link.app, link.model_id, str(link.link_path), str(link.target), reason=reason
    )
