"""Example graphs and the registry of graph names."""

from stepgraph.graphs.context import StepContext
from stepgraph.graphs.registry import load_graph, registered

__all__ = ["StepContext", "load_graph", "registered"]
