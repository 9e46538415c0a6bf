"""Cloud providers, the SSH runner, sync, the artifact store and the sandbox. Imports nothing from console."""
