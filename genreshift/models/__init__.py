"""genreshift.models."""
