"""Running Locust: one measured run, and the commands built on it (compare, capacity, e2e)."""
