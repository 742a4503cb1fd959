"""anwang (安网): a privacy-protective operations platform for a city's public-safety bureau."""

__version__ = "0.1.0"
