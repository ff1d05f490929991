"""scheduler_api: a job API over APScheduler 3, behind authmw."""
