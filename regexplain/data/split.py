"""How many subjects go to training and validation: a profile's counts when they fit the folder, else
fractions, so that a folder of any size (at least :data:`MIN_SUBJECTS` subjects) trains and evaluates.

The split itself is made by group (subject / patient) with a seeded permutation
(:func:`regexplain.data.msd.make_split`) and written to ``<root>/split.json``.
"""

from __future__ import annotations

from collections.abc import Sequence

from regexplain.errors import DataError

#: pairs join two different subjects: training and validation each need two
MIN_PER_SIDE = 2
MIN_SUBJECTS = 2 * MIN_PER_SIDE


def split_sizes(n_subjects: int, n_train: int, n_val: int, fractions: Sequence[float] = (), *,
                exact: bool = False, where: str = "data") -> tuple[int, int, str]:
    """``(n_train, n_val, rule)`` for a folder of ``n_subjects`` groups.

    Rules, in order: ``fractions`` (train, val) when given; the counts when they fit (the paper's 200 / 60
    of 260 subjects, any extra subjects unused); else the counts' own ratio as fractions. Fractions give
    ``round(f * n)`` subjects per side, at least :data:`MIN_PER_SIDE` each, validation first; training
    takes the rest when they sum to 1.

    Args:
        n_subjects: number of groups in the folder.
        n_train, n_val: the profile's (or the user's) counts.
        fractions: ``()`` or ``(train, val)``, each in (0, 1), summing to at most 1.
        exact: the counts were asked for explicitly (``--n-train/--n-val``): they must fit.
        where: the folder, named in errors.
    Returns:
        ``(n_train, n_val, rule)``, ``rule`` ``"counts"`` or ``"fractions"``.
    Raises:
        DataError: fewer than :data:`MIN_SUBJECTS` subjects, or exact counts that do not fit.
    """
    if n_subjects < MIN_SUBJECTS:
        raise DataError(f"{where}: {n_subjects} subject(s); training and validation need at least "
                        f"{MIN_SUBJECTS} ({MIN_PER_SIDE} each, pairs join different subjects)")
    if not fractions:
        if n_train + n_val <= n_subjects:
            return n_train, n_val, "counts"
        if exact:
            raise DataError(f"{where}: --n-train {n_train} + --n-val {n_val} = {n_train + n_val} subjects, "
                            f"only {n_subjects} found (use --split for fractions)")
        fractions = (n_train / (n_train + n_val), n_val / (n_train + n_val))
    f_train, f_val = fractions
    val = min(max(MIN_PER_SIDE, round(f_val * n_subjects)), n_subjects - MIN_PER_SIDE)
    train = n_subjects - val                       # fractions summing to 1 use every subject
    if f_train + f_val < 1 - 1e-9:
        train = min(max(MIN_PER_SIDE, round(f_train * n_subjects)), train)
    return train, val, "fractions"
