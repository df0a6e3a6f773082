import sys

from svcwrap.cli import main

sys.exit(main())
