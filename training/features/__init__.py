"""The declarative feature spec and the one builder used for training and at runtime."""
