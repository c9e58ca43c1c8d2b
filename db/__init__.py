"""The seed's tables as SQLAlchemy 2.0 models, the engine, migrations and on-call queries."""
