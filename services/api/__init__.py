"""One FastAPI app in several concurrency variants (services/registry.py); see variants/."""
