"""Testing a twin: the pytest plugin (:mod:`orbitwin.testing.plugin`), a twin in the test process
(:mod:`orbitwin.testing.harness`), firmware-sim boards (:mod:`orbitwin.testing.boards`) and
assertions in sim time (:mod:`orbitwin.testing.assertions`).

Kept free of imports: the plugin loads with this package in every pytest run.
"""
