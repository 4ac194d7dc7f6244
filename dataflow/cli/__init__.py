"""The ``dataflow`` command line: one module per command, registered in :mod:`dataflow.cli.main`."""
