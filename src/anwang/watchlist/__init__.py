"""Watch lists: which plate reads concern whom, matched in memory at ingest speed."""
