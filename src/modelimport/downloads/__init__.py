"""Downloads: completing a library model from its matched Hugging Face repo.

`shards --download-missing`, `import --download-missing` and `--with-related` fetch what a
model lacks (the missing shards of a set; its config, tokenizer, index json, model card) with
huggingface_hub's `hf_hub_download`, verify each file against the listing's LFS SHA256, and
add them to the model in one atomic step. Submodules: `plan` (what to fetch, and the names it
gets: untrusted input made safe), `fetch` (one download, verified), `complete` (the use case
and its transaction).

    results = complete_models(library, db, ["llm/llama/x"], DownloadOptions(), session, sink)
    result = complete_model(library, db, model_id, DownloadOptions(related=True), session)
"""

from modelimport.downloads.complete import (
    COMPLETED,
    FAILED,
    UNCHANGED,
    CompletionResult,
    DownloadOptions,
    complete_model,
    complete_models,
    require_hub,
    resolve_target,
)
from modelimport.downloads.fetch import DownloadFailed
from modelimport.downloads.plan import RELATED_FILES, DownloadItem, DownloadPlan

__all__ = [
    "COMPLETED",
    "FAILED",
    "RELATED_FILES",
    "UNCHANGED",
    "CompletionResult",
    "DownloadFailed",
    "DownloadItem",
    "DownloadOptions",
    "DownloadPlan",
    "complete_model",
    "complete_models",
    "require_hub",
    "resolve_target",
]
