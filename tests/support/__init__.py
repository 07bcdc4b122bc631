"""Builders and real servers the tests share; no test lives here."""
