"""Running cells: one cell, the plan, executors, the store of results, provenance."""
