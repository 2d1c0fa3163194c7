"""Moved to modelimport.readers.bundles. Kept only for library/integrity.py, which imports
detect_bundle from here and could not be edited while the index work changed it; delete
this package once library/integrity.py imports from modelimport.readers.bundles."""

from modelimport.readers.bundles import detect_bundle

__all__ = ["detect_bundle"]
