"""The built-in sandbox: a moto server, SSH hosts standing in for instances, and a market simulator."""
