"""The campaign engine: scheduler -> planner (batches of <= 50, durable) -> executor."""
