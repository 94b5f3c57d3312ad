"""The Textual console (issue 4). It imports gateway_core; gateway_core never imports it."""
