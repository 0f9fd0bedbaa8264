"""Explaining a trained registration network's latent space: the paper's method and what goes beyond it.

``inputs`` (what every analysis starts from: codes, factors, K, the decomposition's record), ``latent``
(PCA and decoding of elementary transformations), ``bases`` (other bases), ``casestudy`` (Fig 5 / Fig 8),
``affine``, ``disentangle`` (the metrics' maths), ``scores`` (the score registry with nulls), ``report``,
``comparison``, ``matching`` (across trainings) and ``study`` / ``study_record`` (the seed study).
Depends on :mod:`regexplain.registration`, never the other way round.
"""
