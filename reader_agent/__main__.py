"""``python -m reader_agent ...``: the same commands as ``ecard agent ...``, without the other packages."""

from reader_agent.cli import app

app(prog_name="python -m reader_agent")
