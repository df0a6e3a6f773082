import sys

from svcwrap.interpreter import isolate

isolate()  # PYTHON* variables are the service's: run with -E -s (see interpreter.py)

from svcwrap.cli import main  # noqa: E402

sys.exit(main())
