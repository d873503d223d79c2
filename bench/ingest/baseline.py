"""The baseline: a bare Flask endpoint that reads the body and answers 202."""
from flask import Flask, jsonify, request

app = Flask(__name__)


@app.post("/webhooks/stripe")
def receive():
    request.get_data()
    return jsonify(status="accepted"), 202
