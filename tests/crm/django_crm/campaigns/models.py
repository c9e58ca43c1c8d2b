"""The seed's tables as the CRM's Django models declare them (no database defaults: Django
sets its defaults in Python)."""

import uuid

from django.conf import settings
from django.db import models


class GlobalMailAccount(models.Model):
    smtp_host = models.CharField(max_length=255, default="connect.smtp.bz")
    smtp_port = models.IntegerField(default=587)
    smtp_username = models.CharField(max_length=255, default="")
    smtp_password = models.CharField(max_length=255, default="")
    smtp_tls = models.CharField(max_length=10, default="starttls")
    from_email = models.CharField(max_length=254, default="")
    from_name = models.CharField(max_length=255, default="")
    per_user_daily_limit = models.IntegerField(default=0)
    smtp_bz_api_key = models.CharField(max_length=255, default="")
    is_active = models.BooleanField(default=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "mailer_globalmailaccount"


class SmtpBzQuota(models.Model):
    emails_available = models.IntegerField(default=0)
    emails_limit = models.IntegerField(default=0)
    hourly_limit = models.IntegerField(default=0)
    hourly_sent = models.IntegerField(default=0)
    last_synced_at = models.DateTimeField(null=True)
    sync_error = models.TextField(default="")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "mailer_smtpbzquota"


class Campaign(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4)
    name = models.CharField(max_length=255)
    status = models.CharField(max_length=20, default="draft")
    subject = models.CharField(max_length=998)
    html_body = models.TextField(default="")
    text_body = models.TextField(default="")
    from_email = models.CharField(max_length=254, default="")
    from_name = models.CharField(max_length=255, default="")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL)
    total_recipients = models.IntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    started_at = models.DateTimeField(null=True)
    finished_at = models.DateTimeField(null=True)

    class Meta:
        db_table = "mailer_campaign"


class CampaignQueue(models.Model):
    id = models.BigAutoField(primary_key=True)
    campaign = models.OneToOneField(Campaign, on_delete=models.CASCADE, related_name="queue")
    status = models.CharField(max_length=20, default="pending")
    defer_reason = models.CharField(max_length=32, default="", blank=True)
    deferred_until = models.DateTimeField(null=True)
    consecutive_transient_errors = models.IntegerField(default=0)
    last_error = models.TextField(default="", blank=True)
    started_at = models.DateTimeField(null=True)
    queued_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True)

    class Meta:
        db_table = "mailer_campaignqueue"


class CampaignRecipient(models.Model):
    id = models.BigAutoField(primary_key=True)
    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="recipients")
    email = models.CharField(max_length=254)
    name = models.CharField(max_length=255, default="")
    variables = models.JSONField(default=dict)
    status = models.CharField(max_length=20, default="pending")
    message_id = models.CharField(max_length=255, default="")
    error = models.TextField(default="")
    sent_at = models.DateTimeField(null=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "mailer_campaignrecipient"


class SendLog(models.Model):
    id = models.BigAutoField(primary_key=True)
    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE)
    recipient = models.ForeignKey(CampaignRecipient, null=True, on_delete=models.SET_NULL)
    email = models.CharField(max_length=254)
    provider = models.CharField(max_length=32, default="smtp_global")
    status = models.CharField(max_length=20)
    message_id = models.CharField(max_length=255, default="")
    smtp_code = models.IntegerField(null=True)
    error = models.TextField(default="")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "mailer_sendlog"
