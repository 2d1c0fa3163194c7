"""Identify model files on CivitAI by SHA256: an identity source by content.

    session = CivitaiSession(offline=False, timeout=5.0, refresh=False)
    results = session.identify_many(requests)   # requests whose files carry sha256

Submodules: `client` (CivitaiSession, type and base-model tables), `answers` (a model version
object read as untrusted input).
"""

from modelimport.identify.civitai.client import CivitaiSession, family_for, model_type_for

__all__ = ["CivitaiSession", "family_for", "model_type_for"]
