"""Personal data across the domains: erasure by data subject (privacy/erasure.py).

It sits above webhooks, deliveries and documents because erasing a person touches all
of them; they know nothing of it.
"""
