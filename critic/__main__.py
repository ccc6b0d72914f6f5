"""`python -m critic`: the command line."""

from critic.cli import main

main()
