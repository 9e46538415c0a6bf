"""The registered checklist steps; importing this package registers every one."""
