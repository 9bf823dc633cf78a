"""The function runtime: Lambda-compatible worker processes (awslambdaric over pipes or the Lambda Runtime API)."""

from pointcast.functions.runtime.pool import FunctionSpec, InvokeResult, PoolStopped, WorkerPool, node_available

__all__ = ["FunctionSpec", "InvokeResult", "PoolStopped", "WorkerPool", "node_available"]
