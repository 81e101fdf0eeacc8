"""The three course widgets work with ipywidgets 7.7 (what Colab ships) and 8 (what `make` installs).

`make test` runs this with ipywidgets 8; scripts/hosted_check.sh runs it again with 7.7. Each
widget must be an `interactive` whose slider, once moved, redraws the plot.
"""
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

ipywidgets = pytest.importorskip("ipywidgets")
from imix_teach.course import widgets  # noqa: E402


@pytest.fixture
def shown(monkeypatch):
    """Titles of the figures the widgets display (IPython's display, replaced by a recorder)."""
    titles = []
    monkeypatch.setattr("IPython.display.display",
                        lambda fig: titles.append(" | ".join(ax.get_title() for ax in fig.axes)))
    yield titles
    plt.close("all")


@pytest.mark.parametrize("make, value, expected", [
    (widgets.alpha_widget, 2.0, "alpha = 2"),
    (widgets.tau_widget, 0.5, "tau = 0.5"),
    (lambda: widgets.lam_widget(torch.rand(4, 3, 8, 8)), 0.25, "lam = 0.25"),
])
def test_moving_the_slider_redraws(shown, make, value, expected):
    assert int(ipywidgets.__version__.split(".")[0]) in (7, 8)
    widget = make()
    assert isinstance(widget, ipywidgets.interactive)
    slider = widget.children[0]
    assert slider.continuous_update is False  # redraw on release: each draw trains nothing but takes a moment
    slider.value = value
    widget.update()  # what a kernel's comm does after the slider moves
    assert widget.kwargs == {slider.description: pytest.approx(value)}
    assert shown and expected in shown[-1], shown
