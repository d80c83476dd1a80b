"""One FastAPI app in four concurrency variants: see variants/ and README.md."""
