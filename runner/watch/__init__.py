"""`ye-run watch`: every job a live database runs, held to the pipeline's contract (read-only)."""
