-- Inbound webhook deliveries, remembered for replay protection.
CREATE TABLE webhook_deliveries (
    endpoint    TEXT NOT NULL,
    delivery_id TEXT NOT NULL,
    job_id      TEXT NOT NULL,
    received_at REAL NOT NULL,
    PRIMARY KEY (endpoint, delivery_id)
);
CREATE INDEX webhook_deliveries_age ON webhook_deliveries (received_at);
