"""Native (container-free) runner for the lab: embedded PostgreSQL plus server processes."""
