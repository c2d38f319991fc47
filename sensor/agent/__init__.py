"""The composition root: the sensor daemon, its link to the collector and the ``cgsentry-sensor`` CLI.

The only code that imports sensing (the rest of ``sensor``), the models, the rules and the wire
format (``collector.convert``) together; nothing below it imports it back.
tests/unit/test_import_direction.py holds every package to its place.
"""
