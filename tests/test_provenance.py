"""Provenance records tolerate a missing git and a library that does not run from a checkout."""

import torch

from normsharp import provenance


def test_no_checkout_and_no_git_record_no_commit(tmp_path, monkeypatch):
    monkeypatch.setattr(provenance, "CHECKOUT", provenance.CHECKOUT / "src")  # inside some repository, not its root
    provenance.git_state.cache_clear()
    assert provenance.git_state() == (None, None)
    monkeypatch.setattr(provenance, "CHECKOUT", tmp_path)  # a directory that is no git checkout
    provenance.git_state.cache_clear()
    assert provenance.git_state() == (None, None)
    monkeypatch.setenv("PATH", str(tmp_path))  # no git executable at all
    provenance.git_state.cache_clear()
    record = provenance.provenance(torch.device("cpu"), torch.float32)
    provenance.git_state.cache_clear()
    assert record["git_commit"] is None and record["git_dirty"] is None
    assert record["device"] == "cpu" and record["dtype"] == "float32" and record["device_name"]
    assert record["torch_version"] == torch.__version__
