"""`python -m console` is the same as the `console` command."""

from console.cli import main

main()
