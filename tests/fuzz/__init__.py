"""Coverage-guided fuzz targets (atheris) for every parser that reads what others send."""
