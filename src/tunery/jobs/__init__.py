"""Fine-tuning jobs: the OpenAI-shaped API, the store, the worker and the training child process."""

from tunery.jobs.api import (
    cancel_job,
    create_job,
    get_job,
    list_checkpoints,
    list_events,
    list_jobs,
    metrics,
    pause_job,
    resume_job,
)
from tunery.jobs.spec import FineTuneRequest
from tunery.jobs.worker import Worker

__all__ = ["FineTuneRequest", "Worker", "cancel_job", "create_job", "get_job", "list_checkpoints", "list_events",
           "list_jobs", "metrics", "pause_job", "resume_job"]
