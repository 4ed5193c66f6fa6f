"""A LangGraph checkpointer on S3: one thread per Map item, conditional writes, nothing overwritten."""

from stepgraph.checkpoint.layout import CheckpointConflict, CheckpointStoreError, CorruptCheckpoint
from stepgraph.checkpoint.saver import S3Saver

__all__ = ["CheckpointConflict", "CheckpointStoreError", "CorruptCheckpoint", "S3Saver"]
