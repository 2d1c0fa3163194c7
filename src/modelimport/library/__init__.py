"""The library on disk: layout, metadata.json, the SQLite index, staging and recovery."""
