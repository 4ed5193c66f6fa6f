"""The graph runtime: one graph-step invocation, input validation, results."""
