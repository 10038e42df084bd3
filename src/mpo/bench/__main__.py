"""``python -m mpo.bench <command>`` (see ``mpo.bench``)."""

import sys

from mpo.bench.cli import main

if __name__ == "__main__":
    sys.exit(main())
