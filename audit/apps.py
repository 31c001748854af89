from django.apps import AppConfig


class AuditConfig(AppConfig):
    name = "audit"
    verbose_name = "Audit log"

    def ready(self) -> None:
        from auditlog.models import LogEntry
        from django.db.models.signals import pre_save

        from .actors import stamp_actor
        from .registry import register_all

        register_all()
        pre_save.connect(stamp_actor, sender=LogEntry, dispatch_uid="audit.stamp_actor")
