"""``python -m webchat`` is the ``web-chat`` command."""

from webchat.cli.main import main

main()
