"""What Locust loads: scenarios, user classes, shapes and targets (no FastAPI, no matplotlib)."""
