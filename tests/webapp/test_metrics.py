from prometheus_client.parser import text_string_to_metric_families


def livez_count(client) -> float:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.mimetype == "text/plain"
    for family in text_string_to_metric_families(response.get_data(as_text=True)):
        for sample in family.samples:
            if (sample.name == "sluice_http_requests_total"
                    and sample.labels == {"method": "GET", "endpoint": "health.livez",
                                          "status": "200"}):
                return sample.value
    return 0.0


def test_requests_are_counted_by_endpoint_not_path(client):
    before = livez_count(client)
    for _ in range(3):
        client.get("/livez")
    assert livez_count(client) == before + 3
    client.get("/files/some-signed-token-value")
    text = client.get("/metrics").get_data(as_text=True)
    assert "some-signed-token-value" not in text
    assert 'endpoint="unmatched"' in text
