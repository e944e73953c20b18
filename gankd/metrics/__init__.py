"""Measurements: image quality (``fidelity``) and cost/speed (``efficiency``).

Submodules are imported on use so that ``import gankd`` stays light.
"""
