"""Every name Herd gives Kubernetes objects: its API group, annotations and labels.

Pure constants, imported by whichever layer reads or writes them.
"""

from __future__ import annotations

GROUP = "herd.suse.com"
