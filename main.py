"""image-edit-benchmark: `python main.py --config config.yaml` (see README.md)."""

import sys

from src.cli import main

if __name__ == "__main__":
    sys.exit(main())
