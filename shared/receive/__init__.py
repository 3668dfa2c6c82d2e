"""Receivers: what turns a platform's or a browser's request into events on the topic."""
