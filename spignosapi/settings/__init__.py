"""Settings, one module per topic; production differs from development by environment variables only."""

import django_stubs_ext

from .base import *  # noqa: F403
from .db import *  # noqa: F403
from .redis import *  # noqa: F403
from .celery import *  # noqa: F403
from .channels import *  # noqa: F403
from .drf import *  # noqa: F403
from .logging import *  # noqa: F403
from .gateway import *  # noqa: F403
from .energy import *  # noqa: F403
from .monitoring import *  # noqa: F403
from .rag import *  # noqa: F403
from .observability import *  # noqa: F403
from .webhooks import *  # noqa: F403
from .audit import *  # noqa: F403

# Lets admin and querysets be subscripted for type checking (ModelAdmin[ApiKey]) at run time too.
django_stubs_ext.monkeypatch()
