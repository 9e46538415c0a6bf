"""Operator front ends and the checklist engine. Nothing imports this package."""
