"""`python -m settler_pipeline` runs the `settler` command."""

from settler_pipeline.cli.main import main

main()
