"""The import pipeline: collect -> group -> identify -> review -> stage -> commit."""
