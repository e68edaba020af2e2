"""genreshift.train."""
