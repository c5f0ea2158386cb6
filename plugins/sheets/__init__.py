"""Sheets stage: collection-sheet layouts, the segmenters that cut scans and tablet exports into
labelled digits, their QA flags, and the ``sheet`` / ``segment`` / ``label`` commands."""
