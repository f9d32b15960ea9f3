"""`python -m herd`: run the operator against the current kubeconfig (or in-cluster)."""

import sys

from herd.cli import main

sys.exit(main(sys.argv[1:] or ["operator"]))
