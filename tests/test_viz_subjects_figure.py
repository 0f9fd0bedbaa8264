"""plot_components_on_subjects: the same component fields on several subjects (a phantom beside a real crop)."""

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402

from regexplain.viz import figures as F  # noqa: E402


def _blob(shape, center, r):
    d2 = sum((g - c) ** 2 for g, c in zip(np.indices(shape), center, strict=True))
    label = (d2 <= r * r).astype(np.uint8)
    return label.astype(np.float32), label


def test_each_row_is_one_subject_moved_by_every_component(tmp_path):
    shape = (16, 16, 16)
    subjects = {"phantom": (*_blob(shape, (8, 6, 8), 3), None), "real crop": (*_blob(shape, (7, 9, 9), 4), None)}
    disp = np.zeros((2, 3, *shape), np.float32)
    disp[0, 1] = 2.0                       # component 1: sampling offset +2 along H: content moves by -2
    disp[1, 2] = -1.0                      # component 2: content moves by +1 along W
    fig = F.plot_components_on_subjects(subjects, disp, view="sagittal", suptitle="t")
    panels = [ax for ax in fig.axes if ax.get_images()]
    assert len(panels) == 4 and len(fig.axes) == 5                     # 2 x 2 panels + the colour bar
    assert [ax.get_title() for ax in panels[:2]] == ["component 1", "component 2"]
    assert [panels[0].get_ylabel(), panels[2].get_ylabel()] == ["phantom", "real crop"]
    # each row shows its own subject: the image drawn is that subject's sagittal slice through its centre
    for ax, (img, _, _) in zip((panels[0], panels[2]), subjects.values(), strict=True):
        drawn = np.asarray(ax.get_images()[0].get_array())
        cut = int(round(np.nonzero(img)[0].mean()))
        assert drawn.size == img[cut].size and np.isclose(drawn.sum(), img[cut].sum())
    assert F.save_figure(fig, tmp_path / "f.png").stat().st_size > 2000
