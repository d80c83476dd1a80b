"""One module per concurrency model; each holds only what differs (see ../contract.py)."""
