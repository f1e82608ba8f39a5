"""``python -m services.catalog_adapter``: one catalog adapter process (as ``drape catalog run``)."""

import sys

from services.cli import main

sys.exit(main(["catalog", "run", *sys.argv[1:]]))
