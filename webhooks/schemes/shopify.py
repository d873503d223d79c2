"""Shopify: `X-Shopify-Hmac-Sha256`, the base64 HMAC-SHA256 of the body with the app's
client secret; `X-Shopify-Webhook-Id` identifies the delivery (the same on every retry
of it), and `X-Shopify-Topic` names the event (`orders/create`).
"""
from webhooks.schemes.generic_hmac import preset

SCHEME = preset("shopify", signature_header="X-Shopify-Hmac-Sha256",
                signature_encoding="base64", event_key_header="X-Shopify-Webhook-Id",
                type_header="X-Shopify-Topic")
