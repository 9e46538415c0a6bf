"""The Textual operator console. The only place Textual is imported."""
