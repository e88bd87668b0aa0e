"""Environment knobs of the overlapped communication refuse bad values by name."""
import pytest

from mpitrain.comm import peer


def test_ce_reduce_blocks_from_env(monkeypatch):
    monkeypatch.delenv("MPITRAIN_CE_REDUCE_BLOCKS", raising=False)
    assert peer.ce_reduce_blocks_from_env() == 0
    monkeypatch.setenv("MPITRAIN_CE_REDUCE_BLOCKS", "24")
    assert peer.ce_reduce_blocks_from_env() == 24
    monkeypatch.setenv("MPITRAIN_CE_REDUCE_BLOCKS", "-2")
    with pytest.raises(ValueError, match="MPITRAIN_CE_REDUCE_BLOCKS=-2"):
        peer.ce_reduce_blocks_from_env()


def test_comm_priority_refuses_unknown_values(monkeypatch):
    pytest.importorskip("torch")
    from mpitrain.parallel.streams import comm_stream
    monkeypatch.setenv("MPITRAIN_COMM_PRIORITY", "urgent")
    with pytest.raises(ValueError, match="MPITRAIN_COMM_PRIORITY='urgent'"):
        comm_stream("cuda:0")
