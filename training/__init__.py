"""Runs on the GPU host. Imports no other top-level package of this project."""
