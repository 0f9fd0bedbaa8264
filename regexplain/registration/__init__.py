"""Registration: the network and everything that trains, runs and scores it as a registration method.

``spatial`` (the one owner of the coordinate conventions), ``model`` (shared encoder, late fusion, decoder of
the sampling grid's gradients), ``losses``, ``train`` (with ``parallel``: data-parallel CPU ranks),
``checkpoint``, ``inference`` (register two NIfTI files), ``evaluation`` and ``metrics``. Nothing here knows
about latent decompositions (:mod:`regexplain.analysis`).
"""
