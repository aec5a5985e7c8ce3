"""The warm hook worker's script, in a directory of its own.

``kiln_worker.py`` runs inside build environments, which have no kiln in them;
it is started as a script, so this directory lands on its ``sys.path`` (the
worker takes it off again). Nothing else may live here but
``_kiln_worker_imports.py``, which the script loads by path before that.
"""
