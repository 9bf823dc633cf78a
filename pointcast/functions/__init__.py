"""Functions: a Lambda API subset, resource policies, and the worker pool that runs handlers."""
