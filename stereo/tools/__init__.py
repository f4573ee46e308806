"""Tools behind ``scripts/*.py`` (sample generation, comparisons, studies, weights export, checks): each
module has a ``main(argv)`` that speaks ``key=value`` overrides with ``--help``
(:func:`stereo.cli.parse_overrides`)."""
