"""Tasks beyond single-label text classification: each module holds its reader, encoding, model and strategies."""
