"""Placeholder until its issue lands: answers 501."""

import functions_framework


@functions_framework.http
def woocommerce_webhook(request):
    return ({"error": "not implemented yet"}, 501)
