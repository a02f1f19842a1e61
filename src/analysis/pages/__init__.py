"""The tables of the book pages, one module per page (see :mod:`analysis.summaries`)."""
