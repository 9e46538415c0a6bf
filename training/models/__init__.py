"""Model classes shared by the trainer and the runtime checks."""
