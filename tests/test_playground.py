"""Notebook 10's playground default and the widgets notebooks 06, 08 and 09 use (supervised labels, interact)."""
import pytest
import torch


def test_the_playground_default_shows_imix_ahead():
    """Notebook 10 says its default (no augmentation, 8 per class, tau 0.5, alpha 0.2) has i-Mix ahead in most
    seeds; the first two seeds, which its figures and quick mode use, must show it."""
    from imix_teach.course.playground import JITTER, train_toy

    assert JITTER == 0.0  # the default is the no-augmentation setting the notebook describes
    for seed in (0, 1):
        assert train_toy(seed=seed).knn > train_toy(None, seed=seed).knn


def test_jitter_zero_gives_identical_views_and_a_negative_scale_is_refused():
    from imix_teach.course.playground import jitter

    x = torch.randn(5, 2)
    assert torch.equal(jitter(0.0)(x, torch.Generator().manual_seed(0)), x)
    with pytest.raises(ValueError, match="scale must be >= 0"):
        jitter(-0.1)


def test_supervised_targets_plot_draws_the_labels_and_their_mix():
    import matplotlib

    matplotlib.use("Agg")
    from imix_teach.course.widgets import supervised_targets_plot

    fig = supervised_targets_plot(lam=0.7, classes=12, n=12)
    left, right = (torch.as_tensor(ax.images[0].get_array()) for ax in fig.axes[:2])
    assert torch.equal(left, torch.eye(12))  # every label differs: the identity, the self-supervised labels
    assert torch.allclose(right.sum(1), torch.ones(12, dtype=right.dtype))
    fig = supervised_targets_plot(lam=1.0, classes=3, n=12)
    left, right = (torch.as_tensor(ax.images[0].get_array()) for ax in fig.axes[:2])
    assert torch.equal(left, right) and torch.allclose(left.sum(1), torch.ones(12, dtype=left.dtype))
    with pytest.raises(ValueError, match="classes"):
        supervised_targets_plot(classes=0)


def test_interact_gives_any_figure_function_a_picture_of_its_default_state():
    pytest.importorskip("ipywidgets")
    import ipywidgets as widgets
    import matplotlib.pyplot as plt

    from imix_teach.course.widgets import interact, supervised_targets_widget

    def line(slope=1.0):
        fig, ax = plt.subplots()
        ax.plot([0, 1], [0, slope])
        return fig

    for widget in (interact(line, slope=widgets.FloatSlider(value=2.0)), supervised_targets_widget()):
        bundle = widget._repr_mimebundle_()
        assert "application/vnd.jupyter.widget-view+json" in bundle and len(bundle["image/png"]) > 1000


def test_the_static_picture_names_the_control_values_that_drew_it():
    pytest.importorskip("ipywidgets")
    import ipywidgets as widgets
    import matplotlib.pyplot as plt

    from imix_teach.course import widgets as course_widgets

    drawn = []

    def line(slope=1.0, mixed=False):
        fig, ax = plt.subplots()
        ax.plot([0, 1], [0, slope])
        drawn.append(fig)
        return fig

    course_widgets.interact(line, slope=widgets.FloatSlider(value=2.5, description="slope"),
                            mixed=widgets.Checkbox(value=True, description="i-Mix"))
    captions = [[t.get_text() for t in fig.texts] for fig in drawn]  # the live widget draws too, uncaptioned
    assert ["drawn with slope = 2.5, i-Mix = True"] in captions, captions
