"""A small Django project standing in for the CRM: its models mirror the seed's tables, its
own migrations create them, its ORM writes the rows (tests/crm/test_django_rehearsal.py)."""
