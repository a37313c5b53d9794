"""Standard Edition: one front end, no cluster, data in a local SQLite file."""
