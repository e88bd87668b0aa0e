"""Environment knobs of the overlapped communication refuse bad values by name."""
import re

import pytest

from mpitrain.comm import peer_workspace as peer


def test_bucket_wait_refuses_unknown_values(monkeypatch):
    pytest.importorskip("torch")
    from mpitrain.parallel.data_parallel import bucket_wait_from_env
    monkeypatch.delenv("MPITRAIN_DP_BUCKET_WAIT", raising=False)
    assert bucket_wait_from_env(0) == "stream"
    monkeypatch.setenv("MPITRAIN_DP_BUCKET_WAIT", "host")
    assert bucket_wait_from_env(0) == "host"
    monkeypatch.setenv("MPITRAIN_DP_BUCKET_WAIT", "spin")
    with pytest.raises(ValueError, match=re.escape("rank 3: MPITRAIN_DP_BUCKET_WAIT='spin': takes stream | host")):
        bucket_wait_from_env(3)


def test_peer_register_from_env(monkeypatch):
    monkeypatch.delenv("MPITRAIN_PEER_REGISTER", raising=False)
    assert peer.register_from_env() is True
    monkeypatch.setenv("MPITRAIN_PEER_REGISTER", "0")
    assert peer.register_from_env() is False
    monkeypatch.setenv("MPITRAIN_PEER_REGISTER", "maybe")
    with pytest.raises(ValueError, match="MPITRAIN_PEER_REGISTER='maybe': takes 1 or 0"):
        peer.register_from_env()
