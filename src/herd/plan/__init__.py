"""Pure decisions: the chart graph, desired releases, the release state table, stages, tenancy.

Also retry, deletion, templating, cluster values and ownership. Imports `api` only (and the
loose `herd.errors`); never kopf, kubernetes or pyhelm3.
"""
