"""``oltr-bench suite``: the plan of a comparison's runs (:mod:`~oltr_bench.suite.plan`) and their
execution through local processes or submitit (:mod:`~oltr_bench.suite.launch`); the tables are
:mod:`oltr_bench.report.suite`."""
