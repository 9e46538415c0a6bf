"""Subcommand groups of the `console` CLI, one module per area."""
