"""Every payment provider Sluice knows. Adding one is a module here and a line below."""
from __future__ import annotations

from payments.provider import Provider
from payments.providers import (
    adyen,
    flutterwave,
    mpesa,
    paypal,
    paystack,
    razorpay,
    square,
    stripe,
)

PROVIDERS: dict[str, Provider] = {provider.name: provider for provider in (
    stripe.PROVIDER,
    paystack.PROVIDER,
    razorpay.PROVIDER,
    square.PROVIDER,
    flutterwave.PROVIDER,
    mpesa.PROVIDER,
    adyen.PROVIDER,
    paypal.PROVIDER,
)}
