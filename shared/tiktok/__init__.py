"""TikTok's Events API 2.0: the request body (``request``), the client and what each answer means (``api``)."""
