"""The CRM's users: Django's own user model, in the table the seed names."""

from django.contrib.auth.models import AbstractUser


class User(AbstractUser):
    class Meta:
        db_table = "accounts_user"
