"""The checklist engine: checklists as data, steps as small classes, a persisted run."""
