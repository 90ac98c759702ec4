"""BGP: route computation (pure), the speaker that applies it through the GoBGP adapter, and
the route audit."""
