"""The command-line edge: thin click commands over the library (see ``tunery.cli.main.COMMANDS``)."""
