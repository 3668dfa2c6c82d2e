"""TikTok's Events API 2.0: the request format, the client, and what each answer means (``api``)."""
