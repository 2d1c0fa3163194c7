"""modelimport: import local AI model files into one managed, verified model library."""

__version__ = "0.1.0"
