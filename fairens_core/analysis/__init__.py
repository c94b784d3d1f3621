"""Chapter analyses: member predictions in, tidy data frames out (one module per part)."""
