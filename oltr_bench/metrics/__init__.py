"""The one definition of every number oltr-bench reports (SPEC.md §3).

Plain functions over arrays; the CLI, the engine and the reporter all call these.
"""
