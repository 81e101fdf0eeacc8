"""A fallback banner names the data folder as $IMIX_DATA or ~, never a machine's path (committed notebook outputs)."""
from pathlib import Path


def test_fallback_message_names_no_machine_path(tmp_path, monkeypatch, capsys):
    from imix_teach.course import load_or_fallback, portable

    monkeypatch.setenv("IMIX_DATA", str(tmp_path))
    monkeypatch.setenv("IMIX_OFFLINE", "1")
    assert load_or_fallback("fsdd", ("train", "test"), fallback=None) is None
    out = capsys.readouterr().out
    assert "FALLBACK DATA: fsdd" in out and "$IMIX_DATA" in out and str(tmp_path) not in out
    assert portable(f"{Path.home()}/data") == "~/data"


def test_a_skipped_dataset_says_so_and_a_replaced_one_warns_that_outputs_differ(tmp_path, monkeypatch, capsys):
    from imix_teach.course import load_or_fallback

    monkeypatch.setenv("IMIX_DATA", str(tmp_path))
    monkeypatch.setenv("IMIX_OFFLINE", "1")
    load_or_fallback("higgs", ("train", "test"), fallback=None)
    skipped = capsys.readouterr().out
    assert "so the cells below skip it." in skipped and "differ from the text" not in skipped
    load_or_fallback("covtype", ("train", "test"), fallback="digits-table")
    assert "use digits-table instead. Their outputs will differ from the text" in capsys.readouterr().out
