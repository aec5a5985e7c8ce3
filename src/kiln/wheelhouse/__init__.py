"""``kiln wheelhouse``: a whole dependency tree built from source into a wheelhouse.

See docs/wheelhouse.md. The layers, each readable alone: inputs and resolution
make pins, the graph orders them, the scheduler runs ready builds through an
executor, and the wheel cache makes sure nothing is built twice.
"""
