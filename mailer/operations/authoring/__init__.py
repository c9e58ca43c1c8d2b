"""Campaign authoring: reading recipient CSVs, checking templates, creating campaigns."""
