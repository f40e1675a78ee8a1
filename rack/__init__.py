"""The config contract, at the bottom of the tree: the stack file's pydantic models, the loader,
the JSON Schema and reference generators, and the typed endpoints handed between layers.

It imports neither `components` nor `stacks`; both import it (`from rack.config import Node`).
"""
