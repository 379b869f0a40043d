"""User-facing errors.

Every mistake a user can make (unknown config, bad override key, missing data, wrong shapes, bad raw files)
raises ``UserError`` with a message that names the file / field and the fix. Command-line entry points wrap
their ``main`` in :func:`cli_main`, which prints the message without a traceback and exits with status 2.
"""

from __future__ import annotations

import functools
import os
import sys


class UserError(Exception):
  """A mistake in input or configuration. The message says what is wrong and how to fix it."""


def cli_main(fn):
  """Decorator for ``main()`` functions: UserError -> clean message + exit code 2 (traceback with ECHOJAX_DEBUG=1)."""

  @functools.wraps(fn)
  def wrapper(*args, **kwargs):
    try:
      return fn(*args, **kwargs)
    except UserError as e:
      if os.environ.get("ECHOJAX_DEBUG"):
        raise
      print(f"error: {e}", file=sys.stderr)
      sys.exit(2)

  return wrapper
