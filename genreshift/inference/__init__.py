"""genreshift.inference."""
