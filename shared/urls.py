"""`python -m shared.urls`: print where a local run can be reached (used by `make run`)."""

LOCAL_URLS = {
    "intake (catalog, submissions)": "http://127.0.0.1:8081/docs",
    "tracking (status lookup)": "http://127.0.0.1:8082/docs",
    "inquiry (health, metrics)": "http://127.0.0.1:8083/readyz",
    "notify (health, metrics)": "http://127.0.0.1:8084/readyz",
    "sandbox agencies": "http://127.0.0.1:8090/control/faults",
    "sandbox SMS gateway": "http://127.0.0.1:8091/messages",
    "sandbox SMTP sink": "http://127.0.0.1:8092/messages (SMTP on 127.0.0.1:2525)",
    "Jaeger (traces)": "http://127.0.0.1:16686",
    "Kafka": "127.0.0.1:9092",
    "Redis": "redis://127.0.0.1:6380/0",
}

if __name__ == "__main__":
    print("Khedmat is starting; once every process says it is ready:")
    for name, url in LOCAL_URLS.items():
        print(f"  {name:32} {url}")
