"""``python -m taskforge_client``: the ``taskforge`` command line."""

from taskforge_client.cli import main

main()
