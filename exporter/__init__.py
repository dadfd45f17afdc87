"""brokerexport: asynchronous bulk export of broker back-office APIs to Parquet snapshots."""

__version__ = "0.1.0"
