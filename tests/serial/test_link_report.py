"""The cluster all-reduce report: the crossover it derives and the link fraction it prints,
checked against rows built here."""
import json

from mpitrain.bench.link_report import crossover, load, markdown


def row(alg, nbytes, us, impl="mpitrain", busbw=0.01):
    return {"op": "all_reduce", "impl": impl, "algorithm": alg, "bytes": nbytes, "time_us": us,
            "busbw": busbw, "vs_mpi": 1.0}


def test_crossover_is_the_first_size_from_which_hierarchical_always_wins():
    rows = {}
    for b, (ring, rd, hier) in {4096: (10, 5, 8), 65536: (50, 60, 40), 1 << 20: (300, 500, 310),
                                16 << 20: (900, 2000, 600), 64 << 20: (3000, 8000, 2000)}.items():
        for alg, us in (("ring", ring), ("recursive_doubling", rd), ("hierarchical", hier)):
            rows[(alg, b)] = row(alg, b, us)
    assert crossover(rows) == 16 << 20          # it wins at 64 KB too, but loses again at 1 MB
    rows[("hierarchical", 64 << 20)]["time_us"] = 4000
    assert crossover(rows) is None


def test_the_table_reads_busbw_over_the_link_rate(tmp_path):
    path = tmp_path / "allreduce-100mbit.json"
    path.write_text(json.dumps([row("ring", 1 << 20, 100, busbw=0.0125),
                                row("hierarchical", 1 << 20, 60, busbw=0.01875),
                                row("mpi", 1 << 20, 70, impl="mpi", busbw=0.015)]))
    text = markdown(load([path]))
    assert "0.013 (1.00)" in text                   # 12.5 MB/s is 100 Mbit/s: the ring's bound
    assert "0.019 (1.50)" in text and "from: 1M" in text
