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


def test_bucket_wait_refuses_unknown_values(monkeypatch):
    pytest.importorskip("torch")
    from mpitrain.parallel.data_parallel import bucket_wait_from_env
    monkeypatch.delenv("MPITRAIN_DP_BUCKET_WAIT", raising=False)
    assert bucket_wait_from_env(0) == "stream"
    monkeypatch.setenv("MPITRAIN_DP_BUCKET_WAIT", "host")
    assert bucket_wait_from_env(0) == "host"
    monkeypatch.setenv("MPITRAIN_DP_BUCKET_WAIT", "spin")
    with pytest.raises(ValueError, match="rank 3: MPITRAIN_DP_BUCKET_WAIT='spin'"):
        bucket_wait_from_env(3)


def test_comm_priority_refuses_unknown_values(monkeypatch):
    pytest.importorskip("torch")
    from mpitrain.parallel.streams import comm_stream
    monkeypatch.setenv("MPITRAIN_COMM_PRIORITY", "urgent")
    with pytest.raises(ValueError, match="MPITRAIN_COMM_PRIORITY='urgent'"):
        comm_stream("cuda:0")


def test_peer_register_from_env(monkeypatch):
    monkeypatch.delenv("MPITRAIN_PEER_REGISTER", raising=False)
    assert peer.register_from_env() is True
    monkeypatch.setenv("MPITRAIN_PEER_REGISTER", "0")
    assert peer.register_from_env() is False
    monkeypatch.setenv("MPITRAIN_PEER_REGISTER", "yes")
    with pytest.raises(ValueError, match="MPITRAIN_PEER_REGISTER='yes'"):
        peer.register_from_env()
