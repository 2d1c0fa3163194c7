"""Moved to modelimport.readers.collect. Kept only for library/integrity.py, which imports
is_candidate_name from here and could not be edited while the index work changed it;
delete this module once library/integrity.py imports from modelimport.readers.collect."""

from modelimport.readers.collect import is_candidate_name

__all__ = ["is_candidate_name"]
