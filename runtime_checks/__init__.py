"""Feature alignment, the dry run and the pre-live gate. Imports training and remote only."""
