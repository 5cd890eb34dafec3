"""Test helpers shipped for plugin authors: a Messages API stand-in and backend conformance tests.

Product code never imports this package.
"""
