"""The engine both faces share, and the protocols it takes from them."""
