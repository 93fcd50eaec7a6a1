"""``python -m omniembed.cli``: the same as the ``omniembed`` command."""

from omniembed.cli.application import main

main()
