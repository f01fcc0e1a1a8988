"""What several test files share: tiny CLI runs, real audio files, tiny teachers and peer models.

Importable as ``helpers`` because pytest puts ``tests/`` (the root conftest's folder) on
``sys.path``; fixtures live in the conftest files, not here.
"""
