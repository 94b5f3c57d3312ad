"""`python -m console`: the same as `mcp-console`."""

import sys

from console.cli import main

sys.exit(main())
