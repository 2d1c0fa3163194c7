"""Identity sources: what repo or catalog entry a model file is, and how sure we are."""
