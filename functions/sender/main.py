"""Placeholder until its issue lands."""

import functions_framework


@functions_framework.cloud_event
def sender(cloud_event):
    raise NotImplementedError
