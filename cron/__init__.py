"""Scheduled jobs: the beat schedule, the jobs, their locks and run history. Plain Python."""
