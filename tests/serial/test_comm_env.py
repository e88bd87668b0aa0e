"""A job reads its settings once: init() parses the environment into one Settings object, and
every communicator it makes carries that object to its transports, its peer kernels and the
engines beside compute. A value given in code is checked as its variable would be."""
import re

import pytest

from mpitrain.comm.peer_workspace import PeerOptions
from mpitrain.settings import Settings, SettingError, variable

TIMEOUT = variable("timeout")


def test_a_value_given_in_code_is_checked_like_its_variable():
    with pytest.raises(SettingError, match=re.escape(
            f"rank 3: {variable('dp_bucket_wait')}='spin': takes stream | host")):
        Settings().replace(rank=3, dp_bucket_wait="spin")
    with pytest.raises(SettingError, match="takes 1 or 0"):
        Settings().replace(peer_register="maybe")
    with pytest.raises(TypeError, match="'peer_registr' is not a setting"):
        Settings().replace(peer_registr=False)
    changed = Settings().replace(peer_register=False, timeout=3)
    assert (changed.peer_register, changed.timeout) == (False, 3.0)
    assert Settings().peer_register is True                   # the original is left as it was


def test_every_field_has_its_variable_and_its_default():
    env = {variable("peer_register"): "0", variable("dp_peer_blocks"): "7",
           variable("peer_copy_engine"): "0", variable("peer_region_mb"): "0.0625"}
    s = Settings.from_env(env=env)
    assert (s.peer_register, s.dp_peer_blocks, s.peer_copy_engine) == (False, 7, False)


def test_the_peer_kernels_options_come_from_the_settings():
    s = Settings.from_env(env={variable("peer_register"): "0", variable("dp_peer_blocks"): "7",
                               variable("peer_copy_engine"): "0",
                               variable("peer_region_mb"): "0.0625"})
    plain = PeerOptions.plain(s)
    assert (plain.blocks, plain.arrive_first, plain.copy_engine, plain.register) == \
        (s.peer_blocks, False, False, False)
    assert plain.region_bytes() == 1 << 16
    beside = PeerOptions.beside_compute(s)
    assert (beside.blocks, beside.arrive_first, beside.copy_engine) == (7, True, False)
    assert PeerOptions.beside_compute(s, copy_engine=True).copy_engine is True


def test_init_reads_the_environment_once_and_hands_it_on(monkeypatch):
    pytest.importorskip("mpi4py")
    torch = pytest.importorskip("torch")
    from mpitrain.comm import init
    from mpitrain.parallel.data_parallel import DataParallel
    from mpitrain.parallel.streams import overlapping_comm
    monkeypatch.setenv(TIMEOUT, "7")
    world = init(abort_on_error=False)
    assert (world.settings.timeout, world.timeout, world.watchdog.timeout_s) == (7.0, 7.0, 7.0)
    monkeypatch.setenv(TIMEOUT, "9")                   # read once: later changes do not count
    assert world.dup().timeout == 7.0 and world.split(0).settings is world.settings
    assert overlapping_comm(world).peer.blocks == world.settings.dp_peer_blocks
    assert init(timeout=3, abort_on_error=False).timeout == 3.0   # an argument beats the variable
    assert init(settings=Settings(), abort_on_error=False).timeout == Settings().timeout
    with pytest.raises(SettingError, match="rank 0: .*GPU_TRANSPORT='pigeon'"):
        init(gpu_transport="pigeon", abort_on_error=False)
    host = world.dup(settings=world.settings.replace(dp_bucket_wait="host"))
    engine = DataParallel(torch.nn.Linear(2, 2), host, overlap=False)
    assert engine.bucket_wait == "host" and engine.comm.settings is host.settings
    engine.close()
