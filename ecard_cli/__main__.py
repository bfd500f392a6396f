from ecard_cli.main import run

run()
