"""File helpers every layer uses (atomic writes, TFRecords); they import nothing else of the package."""
