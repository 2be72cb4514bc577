"""``python -m jaxae.bench``: the same as ``jaxae bench``."""

import sys

from jaxae.bench import main
from jaxae.errors import JaxaeError

try:
    sys.exit(main())
except JaxaeError as e:
    print(f"jaxae bench: error: {e}", file=sys.stderr)
    sys.exit(2)
