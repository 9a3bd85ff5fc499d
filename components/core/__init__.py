"""The contract's rules as plain functions: no Twisted, Autobahn or Crossbar here."""
