"""Test helpers shipped for plugin authors: a Messages API stand-in (``api``), pytest fixtures
(``pytest_plugin``) and backend conformance tests (``conformance``).

Product code never imports this package.
"""
