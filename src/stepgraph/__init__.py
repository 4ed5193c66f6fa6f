"""stepgraph: run LangGraph graphs over large batches on AWS Step Functions.

Heavy modules (LangGraph, boto3, the simulator) are imported where they are used,
so importing the package or starting the CLI stays fast.
"""

__version__ = "0.1.0"
