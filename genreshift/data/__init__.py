"""genreshift.data."""
