"""The network's fleet frames: the laser mesh as an edge list, and the city-pair latency matrix (pure: no I/O).

``{prefix}/fleet/topology`` (periodic topic ``topology`` of
:data:`~twin.contract.telemetry_encoder.TOPIC_RATES`, default every 10 s of sim time)::

    {"v", "t", "t_s", "run", "bseq", "tick", "links_up", "overloaded", "sats": [name, ...],
     "edges": {"a": [i, ...], "b": [j, ...], "delay_ms": [...], "util": [...]}}

Edge k joins satellites ``sats[a[k]]`` and ``sats[b[k]]`` (a < b; ``sats`` is the fleet in
catalogue order, as ``{prefix}/fleet/catalogue``): one laser link up, its one-way propagation delay
[ms] and its utilisation (offered load / capacity; > 1 overloaded). ``overloaded`` counts the
links (laser and ground) above their capacity.

``{prefix}/fleet/latency`` (each new matrix of the engine, every ``network.city_matrix_interval_s``)::

    {"v", "t", "t_s", "run", "bseq", "tick", "cities": [name, ...], "reachable_pairs",
     "pairs": {"src": [i, ...], "dst": [j, ...], "rtt_ms": [...], "fibre_rtt_ms": [...], "stretch": [...]}}

Every unordered pair of distinct cities once (src < dst, indices into ``cities``): the round trip
over the mesh [ms] (null when no route), a great-circle fibre's round trip [ms] and the stretch
``rtt_ms / fibre_rtt_ms`` (null when no route).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
import numpy as np

from twin.contract.topics import Topics
from twin.core.network import MeshState
from twin.core.network.geometry import C_M_S
from twin.core.network.latency import CityRtt
from twin.schema.telemetry import SCHEMA_VERSION

#: Decimals of the frames' values: delays to 0.1 us, utilisation and stretch to 1e-4.
DELAY_DECIMALS = 4
RATIO_DECIMALS = 4
_MS_PER_S = 1e3


def json_floats(values: np.ndarray, decimals: int) -> str:
    """A float column as the inside of a JSON array: rounded to ``decimals``, null where not finite."""
    x = np.asarray(values, dtype=np.float64)
    if x.size == 0:
        return ""
    slot = f"%.{int(decimals)}f"
    finite = np.isfinite(x)
    if finite.all():  # one %-template: about twice as fast as joining each value's repr
        return ((slot + ",") * x.size)[:-1] % tuple(x.tolist())
    return ",".join(slot % v if ok else "null" for v, ok in zip(x.tolist(), finite.tolist()))


def json_ints(values: np.ndarray) -> str:
    """An integer column as the inside of a JSON array."""
    return ",".join(map(str, np.asarray(values, dtype=np.int64).tolist()))


def _head(t_iso: str, t_s: float, run: int, bseq: int, tick: int) -> str:
    return (f'{{"v":{SCHEMA_VERSION},"t":{json.dumps(t_iso)},"t_s":{json.dumps(round(t_s, 6))},"run":{int(run)},'
            f'"bseq":{int(bseq)},"tick":{int(tick)}')


class TopologyEncoder:
    """The topology frame of one fleet (the satellite name table is rendered once)."""

    def __init__(self, names: Sequence[str], topics: Topics) -> None:
        self.topic = topics.fleet("topology")
        self.n = len(names)
        self._sats = "[" + ",".join(json.dumps(str(n)) for n in names) + "]"

    def encode(self, net: MeshState, t_iso: str, t_s: float, run: int, bseq: int, tick: int) -> tuple[str, bytes]:
        """(topic, payload) of one tick of this fleet's mesh."""
        edges = np.asarray(net.edges, dtype=np.int64).reshape(-1, 2)
        delay_ms = np.asarray(net.edge_length_m, dtype=np.float64) / C_M_S * _MS_PER_S
        body = "".join((
            _head(t_iso, t_s, run, bseq, tick), ',"links_up":', str(edges.shape[0]),
            ',"overloaded":', str(int(net.overloaded)),
            ',"sats":', self._sats,
            ',"edges":{"a":[', json_ints(edges[:, 0]), '],"b":[', json_ints(edges[:, 1]),
            '],"delay_ms":[', json_floats(delay_ms, DELAY_DECIMALS), '],"util":[',
            json_floats(net.edge_util, RATIO_DECIMALS), "]}}"))
        return self.topic, body.encode()


class LatencyEncoder:
    """The city-latency frame of one city list."""

    def __init__(self, topics: Topics) -> None:
        self.topic = topics.fleet("latency")

    def encode(self, rtt: CityRtt, t_iso: str, run: int, bseq: int, tick: int) -> tuple[str, bytes]:
        """(topic, payload) of a city-pair matrix taken at ``rtt.t_s`` (sim s), whose UTC time is ``t_iso``."""
        names = list(rtt.names)
        src, dst = np.triu_indices(len(names), 1)
        rtt_s = np.asarray(rtt.rtt_s, dtype=np.float64)[src, dst]
        fibre_s = np.asarray(rtt.fibre_rtt_s, dtype=np.float64)[src, dst]
        stretch = np.asarray(rtt.stretch, dtype=np.float64)[src, dst]
        body = "".join((
            _head(t_iso, float(rtt.t_s), run, bseq, tick),
            ',"cities":', json.dumps(names), ',"reachable_pairs":', str(int(np.isfinite(rtt_s).sum())),
            ',"pairs":{"src":[', json_ints(src), '],"dst":[', json_ints(dst),
            '],"rtt_ms":[', json_floats(rtt_s * _MS_PER_S, DELAY_DECIMALS),
            '],"fibre_rtt_ms":[', json_floats(fibre_s * _MS_PER_S, DELAY_DECIMALS),
            '],"stretch":[', json_floats(stretch, RATIO_DECIMALS), "]}}"))
        return self.topic, body.encode()
