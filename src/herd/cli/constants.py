"""What the `herd` command line needs before any command runs: exit codes, option names.

Kept free of imports so that building the parser (and `herd --version`) loads nothing
heavy; each command imports its engine only when it runs (`herd.cli.commands`).

Callers: `herd.cli`, `herd.cli.commands`, `herd.cli.render`, `herd.cli.stages`,
`herd.cli.addons`, `herd.__main__`.
"""

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_INVALID = 2
EXIT_CHANGES = 3
EXIT_APPROVAL = 4  # apply stopped at an approval gate (nothing failed)
EXIT_INTERRUPTED = 130

ADDONS_FLAG = "--addons"
ADDONS_SAMPLE = "examples/addons-config.yaml.sample"
