"""The webhook receiver: LeadRat's lead events in the warehouse within seconds.

signature → events → journal (durable ack) → flusher (dlt micro-batches) → warehouse;
`app` serves HTTP, `server` runs it under uvicorn (`leadrat webhooks serve`).
"""
