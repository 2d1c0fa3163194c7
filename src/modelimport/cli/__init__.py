"""The command-line front end: Typer commands over the core, rendered with Rich."""
