"""lakeloop: lake -> Delta features -> Petastorm -> distributed PyTorch -> scoring -> lake.

Library functions take a SparkSession or DataFrame and a typed config object; only
:func:`lakeloop.session.build_session` creates a session.
"""

__version__ = "0.1.0"
