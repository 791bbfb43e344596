"""The entry layer: the body of every `gliocascade` command.

`cli.py` parses the options and hands them to one function here; these functions are the only
code of the package that prints, turns option values into library calls and returns exit codes.
Everything they call is library code that raises :class:`gliocascade.errors.InputError` for bad
input and reports through `logging`, so `run`, the Nextflow modules and tests call the same steps
without a command line.
"""
