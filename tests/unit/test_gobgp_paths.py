"""How porter-lb's routes become GoBGP paths (pure translation, no gobgpd needed)."""

from __future__ import annotations

import pytest

from porter_lb.gobgp_api import common_pb2
from porter_lb.routing.gobgp import family_message, path_message
from porter_lb.routing.routes import Route


@pytest.mark.parametrize(
    ("route", "afi", "prefix", "length"),
    [
        (Route("203.0.113.10/32", "0.0.0.0"), common_pb2.Family.AFI_IP, "203.0.113.10", 32),
        (Route("2001:db8::10/128", "::"), common_pb2.Family.AFI_IP6, "2001:db8::10", 128),
        (Route("203.0.113.0/24", "198.51.100.11", 7), common_pb2.Family.AFI_IP, "203.0.113.0", 24),
    ],
)
def test_route_becomes_path_with_nlri_origin_and_next_hop(
    route: Route, afi: int, prefix: str, length: int
) -> None:
    path = path_message(route)
    assert path.family == common_pb2.Family(afi=afi, safi=common_pb2.Family.SAFI_UNICAST)
    # GoBGP 4: typed oneofs where GoBGP 3 packed google.protobuf.Any.
    assert path.nlri.WhichOneof("nlri") == "prefix"
    assert (path.nlri.prefix.prefix, path.nlri.prefix.prefix_len) == (prefix, length)
    assert [attr.WhichOneof("attr") for attr in path.pattrs] == ["origin", "next_hop"]
    assert path.pattrs[0].origin.origin == 0
    assert path.pattrs[1].next_hop.next_hop == route.next_hop
    assert path.identifier == route.identifier


def test_prefix_with_host_bits_is_refused() -> None:
    with pytest.raises(ValueError, match="has host bits set"):
        path_message(Route("203.0.113.10/24", "0.0.0.0"))


def test_family_of_neighbour_addresses() -> None:
    assert family_message("198.51.100.1/32").afi == common_pb2.Family.AFI_IP
    assert family_message("2001:db8::1/128").afi == common_pb2.Family.AFI_IP6
