"""The constellation's network: +Grid laser mesh, ground segment and routing, as numpy/scipy arrays.

One :class:`Mesh` per fleet, :meth:`Mesh.step` every tick. Model and figures: docs/network.md,
docs/physics.md#network.
"""

from twin.core.network.ground import GroundSites, load_cities, load_gateways
from twin.core.network.mesh import Endpoint, Mesh, MeshState, Route, terminals_from_count
from twin.core.network.params import NetworkParams

__all__ = ["Endpoint", "GroundSites", "Mesh", "MeshState", "NetworkParams", "Route", "load_cities", "load_gateways",
           "terminals_from_count"]
