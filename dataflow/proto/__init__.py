"""Protocol buffers: the V2 data plane (and later the Chainer control plane).

The ``*_pb2.py`` modules are generated; run ``make proto`` to regenerate them from the ``.proto`` files.
"""
