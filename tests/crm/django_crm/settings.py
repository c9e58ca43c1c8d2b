"""Settings of the stand-in CRM: the database comes from ``CRM_DATABASE_*``."""

import os

SECRET_KEY = "tests-only"
USE_TZ = True
TIME_ZONE = "Europe/Moscow"
INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "tests.crm.django_crm.accounts",
    "tests.crm.django_crm.campaigns.apps.CampaignsConfig",
]
AUTH_USER_MODEL = "accounts.User"
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": os.environ.get("CRM_DATABASE_NAME", "crm"),
        "USER": os.environ.get("CRM_DATABASE_USER", "postgres"),
        "HOST": os.environ.get("CRM_DATABASE_HOST", "127.0.0.1"),
        "PORT": os.environ.get("CRM_DATABASE_PORT", "5432"),
    }
}
