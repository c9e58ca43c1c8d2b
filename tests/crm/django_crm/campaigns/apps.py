from django.apps import AppConfig


class CampaignsConfig(AppConfig):
    name = "tests.crm.django_crm.campaigns"
    label = "mailer"  # the seed's tables are mailer_*
