"""python -m echojax.data.synthetic <dataset> --out DIR [--num-videos N] [--seed S] [generator options]"""

from __future__ import annotations

import argparse
import sys

from echojax.data.synthetic import GENERATORS, get_generator
from echojax.errors import cli_main


@cli_main
def main(argv=None):
  argv = sys.argv[1:] if argv is None else argv
  if not argv or argv[0] not in GENERATORS:
    print(f"usage: python -m echojax.data.synthetic {{{','.join(GENERATORS)}}} --out DIR [options]", file=sys.stderr)
    sys.exit(2)
  name, rest = argv[0], argv[1:]
  mod = get_generator(name)
  parser = argparse.ArgumentParser(prog=f"python -m echojax.data.synthetic {name}", description=mod.__doc__)
  parser.add_argument("--out", required=True, help="folder to write the raw layout into")
  parser.add_argument("--seed", type=int, default=0)
  mod.add_arguments(parser)
  args = parser.parse_args(rest)
  out = mod.generate_from_args(args)
  print(f"wrote {name} phantoms to {out}")


if __name__ == "__main__":
  main()
