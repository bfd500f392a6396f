"""Page modules of the web app, one per section (see ``server.web`` for how to add one)."""
