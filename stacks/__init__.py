"""Composition: which parts this rack has, one module per layer (metal, system, platform, ci,
observability, gpu, apps) and `composition.build()` wiring them in order.
"""
