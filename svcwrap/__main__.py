from svcwrap.interpreter import isolate

isolate()  # PYTHON* variables are the service's: run with -E -s (see interpreter.py)

from svcwrap.cli import exit_fast, main  # noqa: E402

exit_fast(main())
